"""Input groups: tasks that read one input share each batch and one encoder pass per step."""

from __future__ import annotations

import pytest
import torch

from lepton_bench.errors import ConfigError
from lepton_bench.run.train import run
from lepton_bench.variants import make_config

from .conftest import TINY

GROUP = ["conll2003", "conll2003_pos", "conll2003_chunk"]


def tiny(variant, data_dir, tasks=None, steps=4, extra=(), **kw):
    return make_config(variant, tasks, overrides=[*TINY, f"train.steps={steps}", f"train.eval_every={steps}", *extra],
                       device="cpu", data_dir=str(data_dir), limit_eval=24, **kw)


class Calls:
    """Counts training-mode forward calls of a model's stems and trunks, and keeps the ids each stem saw."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.ids: dict[str, list[torch.Tensor]] = {}
        self.model = None

    def __call__(self, event, info):
        if event != "start":
            return
        self.model = model = info["model"]
        for kind in ("stems", "trunks"):
            for name, module in getattr(model, kind).items():
                key = f"{kind}.{name}"
                self.calls[key] = 0
                self.ids[key] = []
                module.register_forward_hook(self._hook(key))

    def _hook(self, key):
        def hook(module, args, out):
            if module.training:   # evaluation passes run in eval mode: not counted
                self.calls[key] += 1
                if key.startswith("stems.") and "ids" in args[0]:
                    self.ids[key].append(args[0]["ids"].clone())
        return hook


def test_a_group_run_passes_the_encoder_once_per_step_and_counts_parameters_right(data_dir):
    calls = Calls()
    rec = run(tiny("hard-ew", data_dir, GROUP, steps=4), calls)
    # one stem (the group's) and one trunk pass per step, for three tasks
    assert calls.calls == {"stems.conll2003": 4, "trunks.shared": 4}
    model = calls.model
    shared, own = model.parameter_split()
    stem_and_trunk = {id(p) for m in (model.stems["conll2003"], model.trunks["shared"]) for p in m.parameters()}
    assert {id(p) for p in shared} == stem_and_trunk
    for t in GROUP:   # each task owns exactly its head
        assert {id(p) for p in own[t]} == {id(p) for p in model.heads[t].parameters()}
    params = rec["cost"]["params"]
    assert params["shared"] == sum(p.numel() for p in shared)
    assert params["total"] == params["shared"] + sum(params[f"task.{t}"] for t in GROUP)
    tasks_cost = rec["cost"]["tasks"]
    assert {tasks_cost[t]["group"] for t in GROUP} == {"conll2003"}
    assert len({tasks_cost[t]["examples_seen"] for t in GROUP}) == 1   # the same batches, every task
    # one shared pass at test time over the 24 test sentences, recorded as a share per task: the shares
    # add up to that one pass (24 sentences at its rate), not to three
    rate = {tasks_cost[t]["infer_samples_per_s"] for t in GROUP}
    assert len(rate) == 1
    assert sum(tasks_cost[t]["infer_seconds"] for t in GROUP) * rate.pop() == pytest.approx(24)


def test_runs_mixing_groups_pass_once_per_group(data_dir):
    calls = Calls()
    run(tiny("hard-ew", data_dir, ["cifar10", "conll2003", "conll2003_pos"], steps=3), calls)
    assert calls.calls == {"stems.cifar10": 3, "stems.conll2003": 3, "trunks.shared": 6}


def test_an_stl_run_of_a_group_task_sees_the_group_runs_sentences_in_the_same_order(data_dir):
    seen = {}
    for name, cfg in {"pos alone": tiny("stl-conll2003_pos", data_dir, steps=5),
                      "ner alone": tiny("stl-conll2003", data_dir, steps=5),
                      "group": tiny("hard-ew", data_dir, GROUP, steps=5)}.items():
        calls = Calls()
        run(cfg, calls)
        (key,) = [k for k in calls.ids if k.startswith("stems.")]
        seen[name] = calls.ids[key]
    assert len(seen["group"]) == 5
    for name in ("pos alone", "ner alone"):
        assert all(torch.equal(a, b) for a, b in zip(seen[name], seen["group"], strict=True)), name


def test_an_stl_run_and_a_group_run_train_a_task_on_the_same_labels(data_dir, monkeypatch):
    """Not only the sentences: each task's labels in the group batch are those its STL run trains on."""
    import lepton_bench.run.train as train_module

    labels: dict[str, list[torch.Tensor]] = {}
    step = train_module.train_step

    def recording(s, batches):
        for n, b in batches.items():
            labels.setdefault(n, []).append(b["y"].clone())
        return step(s, batches)

    monkeypatch.setattr(train_module, "train_step", recording)
    seen = {}
    for name, cfg in {"conll2003_pos": tiny("stl-conll2003_pos", data_dir, steps=3),
                      "conll2003": tiny("stl-conll2003", data_dir, steps=3),
                      "group": tiny("hard-ew", data_dir, GROUP, steps=3)}.items():
        labels.clear()
        run(cfg)
        seen[name] = dict(labels)
    for t in ("conll2003_pos", "conll2003"):
        assert len(seen["group"][t]) == 3
        assert all(torch.equal(a, b) for a, b in zip(seen[t][t], seen["group"][t], strict=True)), t
    # and the label sets differ from each other (a group batch does not hand one task's labels to all)
    assert not torch.equal(seen["group"]["conll2003"][0], seen["group"]["conll2003_pos"][0])


def test_tasks_of_a_group_must_share_stem_batch_size_and_data_settings(data_dir):
    with pytest.raises(ConfigError, match="input group conll2003 .* one stem .* model.stems"):
        run(tiny("hard-ew", data_dir, GROUP, extra=["model.stems.conll2003=bilstm"]))
    with pytest.raises(ConfigError, match="one batch_size .* tasks.<task>.batch_size"):
        run(tiny("hard-ew", data_dir, GROUP, extra=["tasks.conll2003_pos.batch_size=8"]))
    with pytest.raises(ConfigError, match=r"one max_len \(conll2003: 128, conll2003_pos: 16, conll2003_chunk: 128\); "
                                          r"set tasks.<task>.max_len alike"):
        run(tiny("hard-ew", data_dir, GROUP, extra=["tasks.conll2003_pos.max_len=16"]))
    with pytest.raises(ConfigError, match=r"one min_freq \(conll2003: 1, conll2003_pos: 1, conll2003_chunk: 3\)"):
        run(tiny("hard-ew", data_dir, GROUP, extra=["tasks.conll2003_chunk.min_freq=3"]))


def test_auxiliary_tasks_are_trained_but_out_of_checkpoint_selection(data_dir):
    rec = run(tiny("hard-ew", data_dir, ["conll2003", "conll2003_pos"], steps=6,
                   extra=["train.eval_every=2", 'auxiliary=["conll2003_pos"]']))
    assert set(rec["metrics"]) == {"conll2003", "conll2003_pos"}
    best = rec["selection"]
    by_step = {v["step"]: v for v in rec["curves"]["val"]}
    ner = {s: v["conll2003"]["entity_f1"] for s, v in by_step.items()}
    assert best["best_val_score"] == max(ner.values())     # NER alone decides, POS does not count
    assert by_step[best["best_step"]]["conll2003"]["entity_f1"] == best["best_val_score"]
    assert "main tasks (conll2003)" in best["rule"]
    with pytest.raises(ConfigError, match="not trained by this run"):
        run(tiny("hard-ew", data_dir, ["conll2003"], extra=['auxiliary=["conll2003_pos"]']))
    with pytest.raises(ConfigError, match="every task .* is auxiliary"):
        run(tiny("stl-conll2003", data_dir, extra=['auxiliary=["conll2003"]']))


def test_a_one_group_per_step_sampler_draws_groups(data_dir):
    calls = Calls()
    rec = run(tiny("hard-ew-round_robin", data_dir, ["imdb", *GROUP], steps=2), calls)
    # two groups (imdb, conll2003): 2 x 2 steps, each one group's batch for all its tasks
    assert rec["cost"]["steps"] == 4
    assert calls.calls == {"stems.imdb": 2, "stems.conll2003": 2, "trunks.shared": 4}


def test_jacobian_on_the_shared_features_needs_one_feature_tensor(data_dir):
    rec = run(tiny("tagging-hard-mgda_ub", data_dir, steps=3))
    assert rec["config"]["weighting_args"]["jacobian"] == "features"
    with pytest.raises(ConfigError, match="needs one feature tensor .* 2 input groups"):
        run(tiny("hard-mgda", data_dir, ["imdb", "conll2003"], extra=["weighting_args.jacobian=features"]))
    with pytest.raises(ConfigError, match="unknown setting weighting_args.jacobian of weighting ew"):
        run(tiny("hard-ew", data_dir, GROUP, extra=["weighting_args.jacobian=features"]))
