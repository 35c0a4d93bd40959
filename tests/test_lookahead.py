"""Auto-Lambda against its meta-gradient worked by hand (Liu et al. 2022, eqs. of the virtual step and the
finite-difference Hessian-vector product); then trained on real data through the run's train_step, with
auxiliary tasks, and refused where it cannot work."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lepton_bench.errors import ConfigError, TrainingError
from lepton_bench.methods import WEIGHTINGS, GivenStep, Lookahead, resolve_args
from lepton_bench.run.train import next_batches, prepare, run, train_step
from lepton_bench.tasks import TaskSpec
from lepton_bench.variants import VARIANTS, make_config

from .conftest import TINY

TRAIN = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 3.0])}   # this step's batch: L_t = |theta - c_t|^2 / 2
FD = {"rtol": 1e-4, "atol": 1e-4}   # a float32 central difference is ~1e-5 off the exact meta-gradient
META = {"a": torch.tensor([2.0, 0.0]), "b": torch.tensor([0.0, 2.0])}    # the second batch


class Quadratic(nn.Module):
    """theta is shared; task t's loss on batch c is |theta - c_t|^2 / 2 (so a central difference is exact).
    A buffer counts the forward passes, as a normalisation layer's statistics would change."""

    def __init__(self, theta=(0.0, 0.0)):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))
        self.register_buffer("forwards", torch.zeros(()))

    def losses_of(self, batches):
        self.forwards += 1
        return {t: 0.5 * ((self.theta - c) ** 2).sum() for t, c in batches.items()}


def step(theta=(0.0, 0.0), primary=("a", "b"), decay=0.0, lr=0.5):
    model = Quadratic(theta)
    w = WEIGHTINGS.get("auto_lambda")(["a", "b"], seed=0).to(torch.device("cpu"))
    ahead = Lookahead(model.losses_of, TRAIN, META, lr, list(primary), {id(model.theta): decay})
    total = w.backward(GivenStep(model.losses_of(TRAIN), model, given_lookahead=ahead))
    return model, w, total


def test_meta_gradient_by_hand_in_multi_task_mode():
    """lambda = [.1, .1], alpha = .5, theta = 0. Virtual step: g = .1 (theta - a) + .1 (theta - b) = [-.1, -.3],
    theta' = [.05, .15]. Every task primary: d = (theta' - a') + (theta' - b') = [-1.9, -1.7].
    grad lambda_t = -alpha d . (theta - c_t): a: -.5 (1.9) = -.95; b: -.5 (5.1) = -2.55.
    Adam's first step moves each by lr = 1e-4 against its gradient's sign: lambda = [.1001, .1001]; the
    real update's gradient is lambda . grad L at the restored theta: [-.1001, -.3003]."""
    model, w, total = step()
    torch.testing.assert_close(w.lam.grad, torch.tensor([-0.95, -2.55]), **FD)
    torch.testing.assert_close(w.lam.detach(), torch.tensor([0.1001, 0.1001]))
    assert w.weights() == pytest.approx({"a": 0.1001, "b": 0.1001})
    assert torch.equal(model.theta.detach(), torch.zeros(2))   # the look-ahead put theta back exactly
    torch.testing.assert_close(model.theta.grad, torch.tensor([-0.1001, -0.3003]))
    torch.testing.assert_close(total, 0.1001 * torch.tensor(0.5 + 4.5))
    assert float(model.forwards) == 2   # the step's forward and the fresh one: the look-ahead's were undone


def test_an_auxiliary_task_that_hurts_the_main_one_loses_weight():
    """Only a is primary: d = theta' - a' = [-1.95, .15]; grad lambda_a = -.5 (1.95) = -.975, grad lambda_b
    = -.5 ([-1.95, .15] . [0, -3]) = +.225: b's step moves a's second-batch loss the wrong way, so lambda_b
    falls (.0999) while lambda_a rises (.1001)."""
    _, w, _ = step(primary=("a",))
    torch.testing.assert_close(w.lam.grad, torch.tensor([-0.975, 0.225]), **FD)
    torch.testing.assert_close(w.lam.detach(), torch.tensor([0.1001, 0.0999]))


def test_the_virtual_step_takes_the_optimizers_weight_decay():
    """theta = [1, 1], decay .2: g = .1 [0, 1] + .1 [1, -2] = [.1, -.1]; theta' = theta - .5 (g + .2 theta) =
    [.85, .95]; a primary: d = theta' - a' = [-1.15, .95]; grad lambda = -.5 [d . [0, 1], d . [1, -2]] =
    [-.475, 1.525]."""
    model, w, _ = step(theta=(1.0, 1.0), primary=("a",), decay=0.2)
    torch.testing.assert_close(w.lam.grad, torch.tensor([-0.475, 1.525]), **FD)
    assert torch.equal(model.theta.detach(), torch.ones(2))


def test_without_a_lookahead_it_says_how_it_runs():
    model = Quadratic()
    w = WEIGHTINGS.get("auto_lambda")(["a", "b"], seed=0).to(torch.device("cpu"))
    assert w.needs.second_stream   # a run draws its second batch from a stream of its own
    with pytest.raises(ConfigError, match="lookahead"):
        w.backward(GivenStep(model.losses_of(TRAIN), model))
    with pytest.raises(ConfigError, match="autol_lr must be positive"):
        WEIGHTINGS.get("auto_lambda")(["a", "b"], resolve_args("auto_lambda", {"autol_lr": 0.0}))


def tiny(variant, data_dir, steps, extra=()):
    return make_config(variant, overrides=[*TINY, f"train.steps={steps}", *extra],
                       device="cpu", data_dir=str(data_dir), limit_eval=24)


def test_trains_a_real_model_with_a_second_stream(data_dir):
    """The three default tasks through train_step: the second batches come from their own stream (not the
    training batches), every parameter group moves, the weights move, and the model's parameters are
    exactly those of the optimizer's update (the look-ahead left no trace)."""
    s = prepare(tiny("hard-ew", data_dir, steps=3, extra=["weighting=auto_lambda"]))
    assert set(s.meta_streams) == set(s.streams)
    shared, own = s.model.parameter_split()
    before = {id(p): p.detach().clone() for p in s.model.parameters()}
    for k in range(1, 4):
        batches = next_batches(s, k)
        out = train_step(s, batches)
        assert all(torch.isfinite(v) for v in out.values())
    for g, first in s.streams.items():   # one second batch per training batch, in another order
        second = s.meta_streams[g]
        assert second.examples == first.examples > 0
        assert second.sets[0][0].cpu_gen.initial_seed() != first.sets[0][0].cpu_gen.initial_seed()
    for group, params in {"shared": shared, **own}.items():
        assert any(not torch.equal(before[id(p)], p.detach()) for p in params), f"{group} did not move"
    w = s.weighting.weights()
    assert set(w) == set(s.names) and all(math.isfinite(v) and v != 0.1 for v in w.values())


def test_with_auxiliary_tasks_only_the_main_task_is_primary(data_dir):
    s = prepare(tiny("tagging-ner-aux-auto_lambda", data_dir, steps=2))
    assert s.cfg.weighting == "auto_lambda" and s.main == ["conll2003"]
    seen = []
    real = type(s.weighting).meta_step
    s.weighting.meta_step = lambda losses, model, extra, ahead: (seen.append(ahead.primary),
                                                                  real(s.weighting, losses, model, extra, ahead))
    train_step(s, next_batches(s, 1))
    assert seen == [["conll2003"]]
    assert "tagging-ner-aux-auto_lambda" in VARIANTS


def test_a_non_finite_task_loss_stops_the_run_naming_the_task(data_dir, monkeypatch):
    real_loss = TaskSpec.loss
    monkeypatch.setattr(TaskSpec, "loss", lambda self, *a, **k: real_loss(self, *a, **k) * float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) for task cifar10 at step 1"):
        run(tiny("hard-auto_lambda", data_dir, steps=2))
