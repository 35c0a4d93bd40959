"""Model shapes for every task and architecture, parameter accounting, padding."""

import dataclasses

import pytest
import torch

from lepton_bench.config import ModelConfig
from lepton_bench.errors import ConfigError
from lepton_bench.models import ARCHITECTURES, TaskIO, build_model
from lepton_bench.models.architectures import needs_one_input
from lepton_bench.models.stems import STEMS
from lepton_bench.tasks import TASKS
from lepton_bench.testing import batch_for, check_architecture

from .conftest import ROOT

CFG = ModelConfig(dim=32, depth=2, heads=2, image_widths=(8, 16))
# What every registered task (plugins' too) feeds the model, with a tiny vocabulary.
IOS = {name: TaskIO(name, spec.input, spec.output, spec.num_labels, vocab_size=40 if spec.input == "text" else 0,
                    max_len=16 if spec.input == "text" else 0, num_shapes=6 if spec.pretokenized else 0)
       for name, spec in TASKS.items()}


def with_stem(stem_example, tasks, stem, cfg=CFG):
    """CFG with ``stem`` (a tiny member for stem families) for ``tasks``."""
    name, overrides = stem_example(stem)
    extra = {k.split(".")[1]: v == "true" for k, v in (o.split("=") for o in overrides)}
    return dataclasses.replace(cfg, stems=dict.fromkeys(tasks, name), **extra)


# One input group: CoNLL-2003 NER, POS and chunking read the same sentences (what same-input
# architectures such as cross_stitch and mtan need).
GROUP = {t: dataclasses.replace(IOS[t], group="conll2003") for t in ("conll2003", "conll2003_pos", "conll2003_chunk")}


def task_sets(arch):
    """Task sets an architecture is built for here: one task at a time (single), the group (an
    architecture that mixes activations on one input), or every task (others)."""
    if arch == "single":
        return [[t] for t in IOS]
    return [list(GROUP)] if needs_one_input(arch) else [list(IOS)]


def ios_of(tasks):
    return [GROUP.get(t, IOS[t]) if set(tasks) <= set(GROUP) else IOS[t] for t in tasks]


@pytest.mark.parametrize("arch", ARCHITECTURES.list())
def test_every_architecture_keeps_its_contract_on_its_own_tasks(arch):
    """Output shapes, parameter accounting, task modules by gradients, padding (``lepton_bench.testing``)."""
    check_architecture(arch)


@pytest.mark.parametrize("arch", ARCHITECTURES.list())
def test_every_architecture_keeps_its_contract_on_every_registered_task(arch):
    """The same checks on every registered task (plugins' too): one at a time (single), the CoNLL-2003
    group (an architecture that mixes activations on one input), or all of them together."""
    for tasks in task_sets(arch):
        check_architecture(arch, ios_of(tasks), CFG)
    if not needs_one_input(arch) and arch != "single":   # tasks of one group beside others
        check_architecture(arch, ios_of(list(GROUP)) + [IOS["imdb"], IOS["cifar10"]], CFG)


def test_hard_sharing_shares_exactly_the_trunk():
    model = build_model("hard", list(IOS.values()), CFG)
    trunk = sum(p.numel() for p in model.trunks["shared"].parameters())
    c = model.parameter_counts()
    assert c["shared"] == trunk
    assert c["task.cifar10"] == sum(p.numel() for m in (model.stems["cifar10"], model.heads["cifar10"])
                                    for p in m.parameters())


def test_single_refuses_several_tasks():
    with pytest.raises(ConfigError, match="exactly one task"):
        build_model("single", list(IOS.values()), CFG)


@pytest.mark.parametrize("stem", [n for n, s in STEMS.items() if "text" in s.inputs])
@pytest.mark.parametrize("task", ["imdb", "conll2003"])
def test_padding_changes_nothing(task, stem, stem_example):
    """An example padded inside a longer batch gets the same output as on its own."""
    io = IOS[task]
    model = build_model("single", [io], with_stem(stem_example, [task], stem)).eval()
    batch = batch_for(io)
    n = 7  # example 0 has 7 real tokens
    alone = {k: v[:1, :n] if v.dim() == 2 else v[:1] for k, v in batch.items()}
    with torch.no_grad():
        full, own = model(task, batch)[:1], model(task, alone)
    if io.output == "tag":
        full = full[:, :n]
    torch.testing.assert_close(full, own, rtol=1e-4, atol=1e-5)


def test_soft_l2_shares_nothing_and_pulls_trunks_together():
    model = build_model("soft_l2", [IOS["imdb"], IOS["conll2003"]], ModelConfig(dim=16, depth=1, heads=2, soft_l2=0.5))
    assert model.parameter_counts()["shared"] == 0
    trunks = list(model.trunks.values())
    trunks[1].load_state_dict(trunks[0].state_dict())
    assert model.extra_loss().item() == 0.0
    with torch.no_grad():
        next(trunks[1].parameters()).view(-1)[0] += 2.0
    # two trunks 2 apart in one value: each is 1 from the mean, 0.5 * (1 + 1)
    assert model.extra_loss().item() == pytest.approx(1.0)


def test_mmoe_shares_the_experts_and_gates_per_task():
    model = build_model("mmoe", list(IOS.values()), ModelConfig(dim=16, depth=1, heads=2, experts=3,
                                                                image_widths=(8,)))
    c = model.parameter_counts()
    experts = sum(p.numel() for p in model.trunks.parameters())
    assert len(model.trunks) == 3 and c["shared"] == experts
    gate = sum(p.numel() for p in model.gates["imdb"].parameters())
    own = sum(p.numel() for m in (model.stems["imdb"], model.heads["imdb"]) for p in m.parameters())
    assert c["task.imdb"] == own + gate


def test_adapters_start_as_identity_and_are_per_task():
    cfg = ModelConfig(dim=16, depth=2, heads=2, adapter_dim=4, image_widths=(8,))
    model = build_model("adapters", list(IOS.values()), cfg).eval()
    hard = build_model("hard", list(IOS.values()), cfg).eval()
    hard.load_state_dict(model.state_dict(), strict=False)
    batch = batch_for(IOS["imdb"])
    with torch.no_grad():
        torch.testing.assert_close(model("imdb", batch), hard("imdb", batch))
    c = model.parameter_counts()
    assert c["shared"] == sum(p.numel() for p in model.trunks["shared"].parameters())
    adapters = sum(p.numel() for p in model.adapters["imdb"].parameters())
    assert adapters == 2 * (2 * 16 + 16 * 4 + 4 + 4 * 16 + 16)


@pytest.mark.parametrize("stem", STEMS.list())
def test_every_stem_feeds_the_trunk_of_every_task_it_reads(stem, stem_example):
    """Every registered stem, for every task whose input it reads: a model trains one step."""
    tasks = [t for t, io in IOS.items() if io.input in STEMS.get(stem).inputs]
    assert tasks, f"stem {stem} reads no input type of the three tasks"
    cfg = with_stem(stem_example, tasks, stem)
    model = build_model("hard", [IOS[t] for t in tasks], cfg)
    for t in tasks:
        out = model(t, batch_for(IOS[t]))
        assert out.shape[-1] == IOS[t].num_outputs and torch.isfinite(out).all()
        out.float().sum().backward()
    assert all(p.grad is not None for p in model.stems.parameters() if p.requires_grad)


def test_a_stem_of_the_wrong_input_type_is_refused():
    cfg = dataclasses.replace(CFG, stems={"imdb": "conv"})
    with pytest.raises(ConfigError, match="stem conv reads image, but task imdb gives text"):
        build_model("hard", [IOS["imdb"]], cfg)
    with pytest.raises(ConfigError, match="unknown stem 'lstm'"):
        build_model("hard", [IOS["imdb"]], dataclasses.replace(CFG, stems={"imdb": "lstm"}))


def test_default_stems_keep_the_run_ids_of_committed_records():
    """model.stems and model.trunk came after the first records: at their defaults they stay out of
    the hash, so every committed quick run is still planned (and resumes as done). A stem for an
    absent task changes nothing."""
    from lepton_bench.grid.plan import plan
    from lepton_bench.results import read_records
    from lepton_bench.variants import make_config

    recorded = {r["run_id"] for r in read_records(ROOT / "results" / "quick" / "runs.jsonl")}
    assert recorded and recorded <= {r.run_id for r in plan("quick")}
    plain = make_config("stl-cifar10")
    assert make_config("stl-cifar10", overrides=['model.stems={"imdb": "embedding"}']).config_hash() == \
        plain.config_hash()
    assert make_config("stl-imdb", overrides=['model.stems={"imdb": "bilstm"}']).config_hash() != \
        make_config("stl-imdb").config_hash()


def test_bilstm_character_cnn_tells_apart_words_with_one_id():
    """With model.char_dim, two unknown words (same <unk> id, different characters) differ."""
    io = dataclasses.replace(IOS["conll2003"], num_chars=30)
    model = build_model("single", [io], dataclasses.replace(CFG, stems={"conll2003": "bilstm"}, char_dim=8)).eval()
    batch = batch_for(io, B=2, L=4)
    batch["ids"][:] = 1
    batch["chars"] = torch.zeros(2, 4, 5, dtype=torch.int16)
    batch["chars"][0, :, :3], batch["chars"][1, :, :3] = 5, 6
    with torch.no_grad():
        out = model("conll2003", batch)
    assert not torch.allclose(out[0], out[1])
    assert model.stems["conll2003"].lstm.input_size == 32 + 8
