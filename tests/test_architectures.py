"""CGC, PLE, DSelect-k, cross-stitch and MTAN: parameters counted by hand, DSelect-k's gate on
hand-worked cases, the one-input architectures' refusal of mixed inputs, and real-data runs.
(Shapes, padding and the exactness of ``task_modules`` are checked for every architecture in
test_models.py; every variant trains in test_train.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lepton_bench.config import ModelConfig
from lepton_bench.errors import ConfigError
from lepton_bench.models import build_model
from lepton_bench.models.experts import binary_codes, dselect_weights, smooth_step
from lepton_bench.run.train import run
from lepton_bench.testing import batch_for, check_architecture
from lepton_bench.variants import make_config

from .conftest import TINY
from .test_models import GROUP, IOS

# d = 8, token-wise MLP trunk of 2 blocks (hidden 16): a block is LN 16 + fc1 8*16+16 + fc2 16*8+8 = 296,
# a trunk 2 blocks + its final LN = 608, a one-block trunk (a PLE level's expert) 296 + 16 = 312.
TINY_CFG = ModelConfig(dim=8, depth=2, heads=2, mlp_ratio=2.0, trunk="mlp", image_widths=(8,), experts=2,
                       task_experts=1)
TRUNK, LEVEL = 608, 312
MIXED = ["imdb", "conll2003"]


def own(model, task, *modules):
    """Parameters of a task's stem (unless its group is shared) and head, plus ``modules``."""
    mods = [model.heads[task], *modules]
    if len([t for t in model.task_names if model.group_of[t] == model.group_of[task]]) == 1:
        mods.append(model.stems[model.group_of[task]])
    return sum(p.numel() for m in mods for p in m.parameters())


def stem(model):
    return sum(p.numel() for p in model.stems.parameters())


def test_trunk_sizes_by_hand():
    from lepton_bench.models.trunk import build_trunk

    assert sum(p.numel() for p in build_trunk(TINY_CFG).parameters()) == TRUNK
    assert sum(p.numel() for p in build_trunk(dataclasses.replace(TINY_CFG, depth=1)).parameters()) == LEVEL


def test_cgc_parameters_by_hand():
    """2 shared experts (full trunks) shared; per task 1 own trunk + a gate Linear(8, 1 + 2)."""
    model = build_model("cgc", [IOS[t] for t in MIXED], TINY_CFG)
    c = model.parameter_counts()
    assert c["shared"] == 2 * TRUNK
    for t in MIXED:
        assert c[f"task.{t}"] == own(model, t) + TRUNK + (8 * 3 + 3)


def test_ple_parameters_by_hand_on_mixed_inputs_and_on_one_group():
    """Two levels (model.depth) of one-block experts. Mixed inputs: each task alone in its group owns
    its experts, its 2 gates Linear(8, 3) and its group's shared gate Linear(8, 2 + 1)."""
    model = build_model("ple", [IOS[t] for t in MIXED], TINY_CFG)
    c = model.parameter_counts()
    assert c["shared"] == 2 * 2 * LEVEL
    for t in MIXED:
        assert c[f"task.{t}"] == own(model, t) + 2 * LEVEL + 2 * 27 + 27
    # One group of 3: the shared gate Linear(8, 2 + 3) and every task's level-0 expert feed the shared
    # path that level 1 reads, so they are shared too; a task owns its level-1 expert and its 2 gates.
    model = build_model("ple", list(GROUP.values()), TINY_CFG)
    c = model.parameter_counts()
    assert c["shared"] == stem(model) + 2 * 2 * LEVEL + (8 * 5 + 5) + 3 * LEVEL
    for t in GROUP:
        assert c[f"task.{t}"] == own(model, t) + LEVEL + 2 * 27


@pytest.mark.parametrize("depth", [1, 3])
def test_ple_task_modules_hold_at_other_depths(depth):
    """At depth 3 a task also reaches the other tasks' level-0 gates (through their level-1 experts)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY_CFG, depth=depth)
    check_architecture("ple", list(GROUP.values()), cfg)   # task_modules exactly what each output reaches
    model = build_model("ple", list(GROUP.values()), cfg)
    if depth == 3:
        shared = {id(p) for p in model.parameter_split()[0]}
        assert all(id(p) in shared for p in model.gates["conll2003_pos"][0].parameters())
        assert not any(id(p) in shared for p in model.gates["conll2003_pos"][1].parameters())


def test_cgc_is_one_ple_level_of_full_trunks():
    torch.manual_seed(0)
    one = build_model("ple", [IOS["imdb"]], dataclasses.replace(TINY_CFG, depth=1))
    torch.manual_seed(0)
    cgc = build_model("cgc", [IOS["imdb"]], dataclasses.replace(TINY_CFG, depth=1))
    cgc.load_state_dict(one.state_dict())
    batch = batch_for(IOS["imdb"])
    with torch.no_grad():
        torch.testing.assert_close(cgc.eval()("imdb", batch), one.eval()("imdb", batch))


def test_dselect_k_parameters_by_hand():
    """3 shared expert trunks; per task z Linear(8, k*m = 2*2) and alpha Linear(8, k = 2)."""
    model = build_model("dselect_k", [IOS[t] for t in MIXED], dataclasses.replace(TINY_CFG, experts=3))
    c = model.parameter_counts()
    assert c["shared"] == 3 * TRUNK
    for t in MIXED:
        assert c[f"task.{t}"] == own(model, t) + (8 * 4 + 4) + (8 * 2 + 2)


def test_cross_stitch_parameters_by_hand():
    """One column (trunk) per task; every column's blocks and the units (2 blocks x 3 x 3 x 8) are
    shared; a task owns its column's final LayerNorm (16) and its head."""
    model = build_model("cross_stitch", list(GROUP.values()), TINY_CFG)
    c = model.parameter_counts()
    assert c["shared"] == stem(model) + 3 * (TRUNK - 16) + 2 * 3 * 3 * 8
    for t in GROUP:
        assert c[f"task.{t}"] == own(model, t) + 16


def test_cross_stitch_starts_at_the_papers_point_and_mixes_columns():
    model = build_model("cross_stitch", list(GROUP.values()), TINY_CFG)
    a = model.alpha[0].view(3, 3, 8)
    torch.testing.assert_close(a[:, :, 0], torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]]))
    assert all(p.ndim == 1 for p in model.alpha)   # AdamW decays matrices only: the units are not decayed
    # identity units: each column alone, as a per-task trunk would be
    with torch.no_grad():
        for p in model.alpha:
            p.copy_(torch.eye(3)[:, :, None].expand(3, 3, 8).reshape(-1))
    model.eval()
    x = torch.randn(2, 5, 8)
    out = model.bodies(list(GROUP), x, None)
    with torch.no_grad():
        for t in GROUP:
            torch.testing.assert_close(out[t], model.trunks[t](x, None))


def test_mtan_parameters_by_hand():
    """Shared: stem, trunk and the one f layer between the 2 blocks (Linear 8x8 + LN: 88). A task:
    attention modules Linear(8, 8) LN Linear(8, 8) LN (176) at block 1, Linear(16, 8) ... (240) at 2."""
    model = build_model("mtan", list(GROUP.values()), TINY_CFG)
    c = model.parameter_counts()
    assert c["shared"] == stem(model) + TRUNK + 88
    for t in GROUP:
        assert c[f"task.{t}"] == own(model, t) + 176 + 240


@pytest.mark.parametrize("arch", ["cross_stitch", "mtan"])
def test_one_input_architectures_refuse_mixed_inputs_with_the_reason(arch):
    with pytest.raises(ConfigError) as e:
        build_model(arch, [IOS["imdb"], GROUP["conll2003"], GROUP["conll2003_pos"]], TINY_CFG)
    msg = str(e.value)
    assert f"architecture {arch}" in msg and "one input" in msg
    assert "tasks imdb, conll2003 read different inputs" in msg
    assert "conll2003: conll2003, conll2003_pos" in msg
    if arch == "cross_stitch":
        assert "mixes the tasks' activations on the same input" in msg
    build_model(arch, [GROUP["conll2003"], GROUP["conll2003_pos"]], TINY_CFG)   # one group: fine
    build_model(arch, [IOS["imdb"]], TINY_CFG)                                   # one task: fine


# ---------------------------------------------------------------- DSelect-k's gate, by hand

def test_smooth_step_by_hand():
    t = torch.tensor([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
    # the cubic at t = 1/4 (gamma 1): -2/64 + 3/8 + 1/2 = 0.84375, and 1 - that at -1/4
    torch.testing.assert_close(smooth_step(t, 1.0), torch.tensor([0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0]))
    torch.testing.assert_close(smooth_step(2 * t, 2.0), smooth_step(t, 1.0))   # gamma scales t


def test_binary_codes_most_significant_bit_first():
    assert binary_codes(4).int().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert binary_codes(3).shape == (3, 2) and binary_codes(5).shape == (5, 3)


def test_dselect_gate_by_hand():
    # k = 2 selectors over n = 4 experts (m = 2 bits). Saturated logits (|z| >= gamma/2) encode an
    # expert exactly: (+, -) is bits 10 = expert 2, (-, +) is 01 = expert 1; equal alphas split 1/2, 1/2.
    z = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    w, r = dselect_weights(z, torch.zeros(2), 1.0, 4)
    torch.testing.assert_close(r, torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
    torch.testing.assert_close(w, torch.tensor([0.0, 0.5, 0.5, 0.0]))
    # alphas 0 and ln 3: softmax 1/4, 3/4
    w, _ = dselect_weights(z, torch.tensor([0.0, torch.log(torch.tensor(3.0))]), 1.0, 4)
    torch.testing.assert_close(w, torch.tensor([0.0, 0.75, 0.25, 0.0]))
    # z = 0: every bit at 1/2, each selector uniform over the 4 experts
    w, r = dselect_weights(torch.zeros(2, 2), torch.zeros(2), 1.0, 4)
    torch.testing.assert_close(w, torch.full((4,), 0.25))
    # a half-open selector: S(1/4) = 0.84375 on the first bit, S(-1) = 0 on the second:
    # r = [(1-S1)(1-S2), (1-S1) S2, S1 (1-S2), S1 S2] = [0.15625, 0, 0.84375, 0]
    w, r = dselect_weights(torch.tensor([[0.25, -1.0]]), torch.zeros(1), 1.0, 4)
    torch.testing.assert_close(w, torch.tensor([0.15625, 0.0, 0.84375, 0.0]))


def test_dselect_gate_weights_sum_to_one_and_pick_at_most_k():
    torch.manual_seed(0)
    z, alpha = torch.randn(50, 3, 3), torch.randn(50, 3)   # 50 tokens, k = 3, 8 experts
    w, r = dselect_weights(z, alpha, 1.0, 8)
    assert w.shape == (50, 8) and r.shape == (50, 3, 8) and (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(50))
    torch.testing.assert_close(r.sum(-1), torch.ones(50, 3))
    w, _ = dselect_weights(z.sign(), alpha, 1.0, 8)           # saturated: each selector one expert
    assert ((w > 0).sum(-1) <= 3).all()
    # n = 3 is no power of 2: code 11 reaches no expert, so the weights sum to at most 1
    w, _ = dselect_weights(z[:, :, :2], alpha, 1.0, 3)
    assert w.shape == (50, 3) and (w.sum(-1) <= 1 + 1e-6).all()
    w, _ = dselect_weights(torch.tensor([[1.0, 1.0]]), torch.zeros(1), 1.0, 3)
    torch.testing.assert_close(w, torch.zeros(3))


def test_dselect_model_gates_per_token_and_regularises_through_the_output():
    cfg = dataclasses.replace(TINY_CFG, experts=3, dselect_k=2)
    model = build_model("dselect_k", [IOS["imdb"], IOS["conll2003"]], cfg)
    x = torch.randn(2, 5, 8)
    w, r = model.gate("imdb", x)
    assert w.shape == (2, 5, 3) and r.shape == (2, 5, 2, 3)
    # at init (z in +-gamma/100) every selector is near uniform over the 4 codes: 3/4 reachable
    torch.testing.assert_close(w.sum(-1), torch.full((2, 5), 0.75), atol=0.1, rtol=0)
    # with 3 experts the unreachable-code penalty reaches the gate even through a zero loss, in training
    model.train()
    out = model("imdb", batch_for(IOS["imdb"]))
    (0 * out).sum().backward()
    assert model.z_gates["imdb"].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()
    (0 * model("imdb", batch_for(IOS["imdb"]))).sum().backward()
    assert model.z_gates["imdb"].weight.grad.abs().sum() == 0
    # 4 experts and no entropy penalty: nothing to add
    model4 = build_model("dselect_k", [IOS["imdb"]], dataclasses.replace(cfg, experts=4)).train()
    (0 * model4("imdb", batch_for(IOS["imdb"]))).sum().backward()
    assert model4.z_gates["imdb"].weight.grad.abs().sum() == 0
    with pytest.raises(ConfigError, match="model.experts >= 2"):
        build_model("dselect_k", [IOS["imdb"]], dataclasses.replace(cfg, experts=1))


# ---------------------------------------------------------------- real data

def tiny(variant, data_dir, steps=3):
    return make_config(variant, overrides=[*TINY, f"train.steps={steps}", f"train.eval_every={steps}"],
                       device="cpu", data_dir=str(data_dir), limit_eval=24)


@pytest.mark.parametrize("variant", ["tagging-cross_stitch-ew", "tagging-mtan-ew"])
def test_one_input_variants_pass_the_group_once_per_step(variant, data_dir):
    """The group's stem, and each trunk block, run once per training step for the three tasks."""
    calls: dict[str, int] = {}
    seen = {}

    def count(key):
        def hook(module, args, out):
            if module.training:
                calls[key] = calls.get(key, 0) + 1
        return hook

    def watch(event, info):
        if event == "start":
            model = seen["model"] = info["model"]
            model.stems["conll2003"].register_forward_hook(count("stem"))
            for name, trunk in model.trunks.items():
                trunk.blocks[0].register_forward_hook(count(f"block0.{name}"))
            seen["alpha"] = [p.detach().clone() for p in getattr(model, "alpha", [])]

    rec = run(tiny(variant, data_dir), watch)
    columns = list(GROUP) if variant == "tagging-cross_stitch-ew" else ["shared"]
    assert calls == {"stem": 3, **{f"block0.{c}": 3 for c in columns}}
    assert set(rec["metrics"]) == set(GROUP)
    for before, after in zip(seen["alpha"], getattr(seen["model"], "alpha", []), strict=True):
        assert not torch.equal(before, after.detach())   # the cross-stitch units learn


def test_mixing_inputs_with_cross_stitch_fails_when_the_model_is_built(data_dir):
    cfg = make_config("tagging-cross_stitch-ew", ["imdb", "conll2003"], overrides=[*TINY, "train.steps=2"],
                      device="cpu", data_dir=str(data_dir), limit_eval=24)
    with pytest.raises(ConfigError, match="tasks imdb, conll2003 read different inputs"):
        run(cfg)


def test_the_new_settings_leave_run_ids_alone_at_their_defaults():
    """model.task_experts and model.dselect_* are 'added': hashed only off their defaults (so committed
    run ids hold), and 'sharing': out of the design label that matches STL runs."""
    plain = make_config("cgc-ew")
    assert make_config("cgc-ew", overrides=["model.task_experts=1", "model.dselect_k=2"]).config_hash() == \
        plain.config_hash()
    assert make_config("cgc-ew", overrides=["model.task_experts=2"]).config_hash() != plain.config_hash()
    assert make_config("dselect_k-ew", overrides=["model.dselect_gamma=0.5"]).config_hash() != \
        make_config("dselect_k-ew").config_hash()
