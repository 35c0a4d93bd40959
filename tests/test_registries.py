"""Every registered trunk, sampler, weighting and grid — core or plugin — is exercised here, with no
test written for it (variants, tasks, stems and architectures are trained in test_train.py and
test_models.py the same way)."""

from __future__ import annotations

import pytest
import torch

from lepton_bench.config import ModelConfig, WeightingConfig
from lepton_bench.grid import GRIDS, plan
from lepton_bench.lookahead import Lookahead
from lepton_bench.models import TaskIO, build_model
from lepton_bench.models.trunk import TRUNKS
from lepton_bench.sampling import SAMPLERS
from lepton_bench.variants import VARIANTS
from lepton_bench.weighting import WEIGHTINGS

CFG = ModelConfig(dim=16, depth=2, heads=2, mlp_ratio=2.0, dropout=0.0)


@pytest.mark.parametrize("name", TRUNKS.list())
def test_every_trunk_keeps_the_shape_and_keeps_padding_out_of_real_tokens(name):
    torch.manual_seed(0)
    trunk = TRUNKS.get(name)(CFG).eval()
    x = torch.randn(2, 7, CFG.dim)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False                                   # three padded positions in row 1
    noisy = x.clone()
    noisy[1, 4:] = 100 * torch.randn(3, CFG.dim)          # whatever sits at padded positions...
    with torch.no_grad():
        a, b = trunk(x, mask), trunk(noisy, mask)
    assert a.shape == x.shape and torch.isfinite(a).all()
    torch.testing.assert_close(a[1, :4], b[1, :4])        # ...changes no real token's output
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a, x)                       # and the trunk does something


SIZES = {"small": 100, "mid": 400, "big": 1600}


@pytest.mark.parametrize("name", SAMPLERS.list())
def test_every_sampler_draws_known_tasks_reproducibly_and_each_of_them(name):
    make = lambda: SAMPLERS.get(name)(list(SIZES), SIZES, 300, seed=3)   # noqa: E731
    a, b = make(), make()
    draws = [a.tasks_at(step) for step in range(1, 301)]
    assert draws == [b.tasks_at(step) for step in range(1, 301)]
    assert all(d and set(d) <= set(SIZES) for d in draws)
    assert {t for d in draws for t in d} == set(SIZES)    # no task is starved over 300 steps
    for step in (1, 150, 300):
        p = a.probabilities(step)
        assert p.shape == (3,) and abs(p.sum() - 1) < 1e-9 and (p >= 0).all()


def two_task_model():
    ios = [TaskIO("a", "text", "class", 2, vocab_size=30, max_len=8),
           TaskIO("b", "text", "tag", 3, vocab_size=30, max_len=8)]
    return build_model("hard", ios, CFG)


def batch():
    ids = torch.randint(2, 30, (4, 8))
    return {"ids": ids, "lengths": torch.full((4,), 8), "host_lengths": torch.full((4,), 8)}


@pytest.mark.parametrize("name", WEIGHTINGS.list())
def test_every_weighting_fills_finite_gradients_of_shared_and_task_parameters(name):
    torch.manual_seed(0)
    model = two_task_model()
    weighting = WEIGHTINGS.get(name)(["a", "b"], WeightingConfig(), seed=0).to(torch.device("cpu"))
    weighting.check(model)
    for _ in range(3):   # stateful ones (DWA's windows, FAMO's logits) take a few steps
        for p in model.parameters():
            p.grad = None
        x, ya, yb = batch(), torch.tensor([0, 1, 0, 1]), torch.randint(0, 3, (4, 8))

        def losses_of(rows, x=x, ya=ya, yb=yb):
            xs = {k: v[rows] for k, v in x.items()}
            return {"a": torch.nn.functional.cross_entropy(model("a", xs), ya[rows]),
                    "b": torch.nn.functional.cross_entropy(model("b", xs).flatten(0, 1), yb[rows].flatten())}

        losses = losses_of(slice(None))
        if weighting.two_batches:   # as train_step: two half-batches, the step's losses their mean
            weighting.halves = [losses_of(slice(0, 2)), losses_of(slice(2, 4))]
            losses = {t: (weighting.halves[0][t] + weighting.halves[1][t]) / 2 for t in losses}
        if weighting.meta_batches:   # as train_step: a second batch, here the first half of the same one
            weighting.lookahead = Lookahead(losses_of, slice(None), slice(0, 2), 0.1, ["a", "b"])
        weighting.backward(losses, model, model.extra_loss())
        weighting.after_step({k: v.detach() for k, v in losses.items()})
    shared, own = model.parameter_split()
    for group, params in {"shared": shared, **own}.items():
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, f"{name}: no gradient reached the {group} parameters"
        assert all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads), f"{name}: zero gradient on the {group} parameters"
    w = weighting.weights()
    assert set(w) == {"a", "b"} and all(isinstance(v, float) for v in w.values())


@pytest.mark.parametrize("name", GRIDS.list())
def test_every_grid_plans_registered_variants_with_distinct_run_ids(name):
    runs = plan(name, seeds=2)
    assert runs
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(r.config.variant in VARIANTS for r in runs)
    assert {r.config.seed for r in runs} == {0, 1}
