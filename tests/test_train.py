"""Training runs on real slices: every variant, determinism, budgets, failures."""

from __future__ import annotations

import pytest
import torch

from lepton_bench.errors import TrainingError
from lepton_bench.models.stems import DEFAULT_STEMS, STEMS
from lepton_bench.run.train import run
from lepton_bench.tasks import TASKS, TaskSpec
from lepton_bench.testing import check_variant
from lepton_bench.variants import VARIANTS, make_config

from .conftest import TINY


def tiny(variant, data_dir, steps=4, seed=0, extra=(), **kw):
    return make_config(variant, seed=seed, overrides=[*TINY, f"train.steps={steps}", *extra],
                       device="cpu", data_dir=str(data_dir), limit_eval=24, **kw)


@pytest.mark.parametrize("variant", VARIANTS.list())
def test_every_variant_trains_and_writes_a_complete_record(variant, data_dir):
    """Every registered variant (plugins included) trains on real slices; no test code per variant
    (``lepton_bench.testing.check_variant``, which a plugin's own tests call too)."""
    rec = check_variant(variant, data_dir)
    assert rec["env"]["torch"] == torch.__version__
    assert rec["config"]["train"]["steps"] == 4


def test_same_seed_same_numbers_other_seed_other_numbers(data_dir):
    a = run(tiny("hard-ew", data_dir, steps=6))
    b = run(tiny("hard-ew", data_dir, steps=6))
    c = run(tiny("hard-ew", data_dir, steps=6, seed=1))
    assert a["curves"] == b["curves"] and a["metrics"] == b["metrics"]
    assert a["curves"]["train_loss"] != c["curves"]["train_loss"]


def test_best_validation_checkpoint_is_the_one_tested(data_dir):
    rec = run(tiny("stl-conll2003", data_dir, steps=6))
    best = rec["selection"]["best_step"]
    at_best = next(v for v in rec["curves"]["val"] if v["step"] == best)
    assert at_best["conll2003"] == rec["metrics"]["conll2003"]["val"]
    assert rec["selection"]["best_val_score"] == max(
        v["conll2003"]["entity_f1"] for v in rec["curves"]["val"])


def test_non_finite_loss_stops_the_run_with_a_clear_error(data_dir, monkeypatch):
    real_loss = TaskSpec.loss
    monkeypatch.setattr(TaskSpec, "loss", lambda self, *a, **k: real_loss(self, *a, **k) * float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) for task imdb at step 1"):
        run(tiny("stl-imdb", data_dir))


def test_out_of_memory_becomes_a_clear_error(data_dir, monkeypatch):
    from lepton_bench.models import MultiTaskModel

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(MultiTaskModel, "extra_loss", oom)
    with pytest.raises(TrainingError, match="out of memory .* lower tasks.<task>.batch_size"):
        run(tiny("stl-imdb", data_dir))


def test_gpu_only_fast_paths_degrade_on_cpu_and_are_recorded(data_dir):
    """bf16 and torch.compile asked for on CPU: the run trains fp32 eager, warns, and says so."""
    plain = run(tiny("hard-ew", data_dir))
    cfg = tiny("hard-ew", data_dir, precision="bf16", compile=True)
    with pytest.warns(UserWarning) as caught:
        rec = run(cfg)
    messages = " | ".join(str(w.message) for w in caught)
    assert "bf16 autocast needs a CUDA GPU" in messages and "torch.compile is used on CUDA only" in messages
    env = rec["env"]
    assert env["precision"] == "fp32" and env["compiled"] is False and env["tf32"] is False
    assert len(env["notes"]) == 2
    # how it runs is not what is trained: same run id, same numbers
    assert rec["run_id"] == plain["run_id"]
    assert rec["metrics"] == plain["metrics"]
    cost = rec["cost"]
    assert cost["mfu"] is None and cost["peak_tflops"] is None   # no data-sheet peak for a CPU
    assert cost["model_tflops_per_s"] > 0


def test_flops_per_step_count_the_tasks_a_step_trains(data_dir):
    every = run(tiny("hard-ew", data_dir, steps=6))
    one = run(tiny("hard-ew-round_robin", data_dir, steps=2))   # 6 steps, one task each
    per_task = {t: c["flops_per_step"] for t, c in every["cost"]["tasks"].items()}
    assert every["cost"]["flops_per_step"] == pytest.approx(sum(per_task.values()))
    timed = list(range(2, 7))   # steps after timing_warmup=1; round robin trains task (step-1) % 3
    order = list(one["tasks"])
    expected = sum(one["cost"]["tasks"][order[(s - 1) % 3]]["flops_per_step"] for s in timed) / len(timed)
    assert one["cost"]["flops_per_step"] == pytest.approx(expected)


def test_bilstm_with_a_character_cnn_trains_on_real_sentences(data_dir):
    from lepton_bench.models.stems import CharCNN

    seen = {}

    def snapshot(event, info):
        if event == "start":
            seen["cnns"] = [m for m in info["model"].modules() if isinstance(m, CharCNN)]
            seen["before"] = [p.detach().clone() for m in seen["cnns"] for p in m.parameters()]

    extra = ["model.stems.conll2003=bilstm"]
    rec = run(tiny("stl-conll2003", data_dir, steps=2, extra=[*extra, "model.char_dim=8"]), snapshot)
    assert len(seen["cnns"]) == 1 and seen["cnns"][0].conv.out_channels == 8   # the stem has the char CNN
    after = [p.detach() for p in seen["cnns"][0].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(seen["before"], after, strict=True)), "char CNN did not train"
    plain = run(tiny("stl-conll2003", data_dir, steps=2, extra=extra))
    # the char CNN's parameters, and the LSTM's input widened by its features, are counted
    assert rec["cost"]["params"]["total"] - plain["cost"]["params"]["total"] > sum(p.numel() for p in after)


@pytest.mark.parametrize("stem", STEMS.list())
def test_every_stem_trains_its_tasks_on_real_data(stem, data_dir, stem_example):
    name, overrides = stem_example(stem)
    for task in TASKS.list():
        if TASKS.get(task).input not in STEMS.get(stem).inputs:
            continue
        rec = run(tiny(f"stl-{task}", data_dir, steps=2, extra=[f"model.stems.{task}={name}", *overrides]))
        default = name == DEFAULT_STEMS[TASKS.get(task).input]   # a default stem is not written out
        assert rec["config"]["model"]["stems"] == ({} if default else {task: name})
        assert all(0.0 <= v <= 1.0 for v in rec["metrics"][task]["test"].values())


def nan_after_start(monkeypatch, cls, method, from_call):
    """Make ``cls.method`` return NaN from its ``from_call``-th call after training starts (not in
    the FLOP probe before it); returns the progress callback that starts the count."""
    real, state = getattr(cls, method), {"armed": False, "calls": 0}

    def patched(self, *a, **k):
        out = real(self, *a, **k)
        if state["armed"]:
            state["calls"] += 1
            if state["calls"] >= from_call:
                return out * float("nan")
        return out

    monkeypatch.setattr(cls, method, patched)
    return lambda event, info: state.update(armed=True) if event == "start" else None


@pytest.mark.parametrize("log_every, bad_step", [(1, 1), (3, 2)])
def test_a_non_finite_combined_loss_names_the_weighting_and_its_first_step(data_dir, monkeypatch, log_every,
                                                                          bad_step):
    from lepton_bench.methods.ew import EqualWeighting

    progress = nan_after_start(monkeypatch, EqualWeighting, "combine", bad_step)
    cfg = tiny("stl-imdb", data_dir, steps=6, extra=[f"train.log_every={log_every}"])
    # the task losses were finite at that step: the weighting's combined loss is named, not the task
    # (after that step the NaN gradients make the task losses NaN too)
    with pytest.raises(TrainingError, match=rf"^non-finite combined loss \(nan\) of weighting ew at step "
                                            rf"{bad_step} of stl-imdb; "):
        run(cfg, progress)


def test_a_non_finite_task_loss_between_log_points_names_the_task_and_its_first_step(data_dir, monkeypatch):
    progress = nan_after_start(monkeypatch, TaskSpec, "loss", 2)
    with pytest.raises(TrainingError, match=r"^non-finite loss \(nan\) for task imdb at step 2 of stl-imdb"):
        run(tiny("stl-imdb", data_dir, steps=6, extra=["train.log_every=3"]), progress)


def test_famo_compares_losses_with_the_same_label_smoothing_before_and_after_the_step(data_dir):
    """With lr 0 and no dropout the update changes nothing, so the losses after the step equal those
    before and FAMO's logits stay 0; the old code recomputed the after-losses without label smoothing,
    saw a drop that is not there, and moved them."""
    from lepton_bench.run.train import next_batches, prepare, train_step

    cfg = tiny("hard-famo", data_dir, steps=2, extra=["train.lr=0", "model.dropout=0", "train.warmup_frac=0",
                                                       "tasks.imdb.label_smoothing=0.2"])
    s = prepare(cfg)
    train_step(s, next_batches(s, 1))
    assert torch.equal(s.weighting.xi.detach(), torch.zeros(len(s.names)))
