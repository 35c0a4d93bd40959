"""FORUM against its update worked by hand from the authors' code (Baijiong-Lin/FORUM ``Trainer.train_FORUM``,
the same as LibMTL's ``bacth_forward_FORUM``); the contract checks of every method; a short real run.

The toy: theta in R^3 is the whole model (at 0); task t's loss on a batch c is |theta - c_t|^2 / 2. The
lower-level (the step's) batch is a = [1, 0, 0], b = [0, 3, 0]; eta = .5 and T = 2 inner steps; rho = .1.

Common to every case (alpha = [.5, .5], so softmax(alpha) = [.5, .5]):
  L(theta) = [.5, 4.5], f = 2.5; grad_theta f = .5 (theta - a) + .5 (theta - b) = [-.5, -1.5, 0];
  grad_alpha f = w * (L - w.L) = .5 [.5 - 2.5, 4.5 - 2.5] = [-1, 1].
  Inner steps: theta <- theta - .5 (theta - m), m = [.5, 1.5, 0]: theta^1 = [.25, .75, 0], theta^2 = [.375, 1.125, 0];
  L(theta^2) = [(.625^2 + 1.125^2) / 2, (.375^2 + 1.875^2) / 2] = [.828125, 1.828125], w.L = 1.328125,
  grad_alpha f(theta^2) = .5 [-.5, .5] = [-.25, .25].
  grad q = (alpha part [-1, 1] - [-.25, .25] = [-.75, .75]; theta part [-.5, -1.5, 0]), ||grad q||^2 = 3.625 = 29/8.
The upper-level (second) batch sets each task's normalised gradient g_t = (theta - c_t) / |theta - c_t|.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import lepton_bench.methods.forum  # noqa: F401  (registers "forum")
from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, GivenStep, Lookahead, resolve_args
from lepton_bench.testing import check_weighting

from .conftest import short_real_run

TRAIN = {"a": torch.tensor([1.0, 0.0, 0.0]), "b": torch.tensor([0.0, 3.0, 0.0])}
TOL = {"rtol": 1e-5, "atol": 1e-5}   # the QP solver's tolerance (and the code's 1e-8 guards)


class Quadratic(nn.Module):
    """theta is the model; task t's loss on batch c is |theta - c_t|^2 / 2. A buffer counts the forward
    passes, as a normalisation layer's statistics would change."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(3))
        self.register_buffer("forwards", torch.zeros(()))

    def losses_of(self, batches):
        self.forwards += 1
        return {t: 0.5 * ((self.theta - c) ** 2).sum() for t, c in batches.items()}


def make(**cfg):
    args = {"forum_inner_lr": 0.5, "forum_inner_steps": 2, **cfg}
    return WEIGHTINGS.get("forum")(["a", "b"], resolve_args("forum", args), seed=0).to(torch.device("cpu"))


def step(w, meta, primary=("a", "b"), model=None):
    model = model or Quadratic()
    ahead = Lookahead(model.losses_of, TRAIN, meta, 0.01, list(primary))
    total = w.backward(GivenStep(model.losses_of(TRAIN), model, given_lookahead=ahead))
    return model, total


def test_upper_objectives_that_agree_with_the_lower_level_leave_alpha_alone():
    """Second batch a = [2, 0, 0], b = [0, 2, 0]: g_a = [-1, 0, 0], g_b = [0, -1, 0].
    <grad q, g_a> = .5, <grad q, g_b> = 1.5: pi = .1 - [.5, 1.5] / 3.625 = [-.0379, -.3138], both < 0, so
    nu = max(lambda.pi, 0) = 0 for every lambda. The QP at w_q = 0 has d/dw_q = 2 <lambda g, grad q> - c > 0
    (c = .3625), so w_q = 0, and lambda is the min-norm point of two orthogonal unit vectors: [.5, .5].
    The update: theta gets .5 g_a + .5 g_b = [-.5, -.5, 0]; alpha's gradient is nu (...) = 0, and Adam's
    step of a zero gradient leaves it at [.5, .5]."""
    w = make()
    model, total = step(w, {"a": torch.tensor([2.0, 0.0, 0.0]), "b": torch.tensor([0.0, 2.0, 0.0])})
    np.testing.assert_allclose(w.last_w, [0.5, 0.5, 0.0], atol=1e-5)
    np.testing.assert_allclose(w.lam, [0.5, 0.5], atol=1e-5)
    assert w.nu == 0.0
    torch.testing.assert_close(model.theta.grad, torch.tensor([-0.5, -0.5, 0.0]), **TOL)
    torch.testing.assert_close(w.alpha.grad, torch.zeros(2))
    torch.testing.assert_close(w.alpha.detach(), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(total, torch.tensor(2.5))
    assert torch.equal(model.theta.detach(), torch.zeros(3))   # the inner steps were undone exactly
    assert float(model.forwards) == 2   # the step's and the second batch's forward: the inner ones' were undone


def test_the_constrained_qp_and_the_joint_update_by_hand():
    """Second batch a = [0, 0, -2], b = [0, -2, 0]: g_a = e3, g_b = e2. <grad q, g_a> = 0, <grad q, g_b> = -1.5:
    pi_a = .1, pi_b = .1 + 1.5 / 3.625 = .1 + 12/29 = 149/290. Both > 0; the QP's unconstrained w_q is
    lambda.pi - rho/2 < lambda.pi, so w_q = nu = lambda.pi, and with lambda = (s, 1 - s), u = s e3 + (1 - s) e2:
      h(s) = |u|^2 + 2 nu <u, grad q> + (29/8) nu^2 - (29/80) nu,  |u|^2 = 2s^2 - 2s + 1,  <u, grad q> = -1.5 (1 - s),
      nu = 149/290 - (12/29) s   =>   h(s) = (40/29) s^2 - (353/580) s + 133/580,
    minimised at s = 353/1600 = .220625 (inside [0, 1]): lambda = [.220625, .779375], nu = .4225 (the first step's
    rate is 1: lambda is the QP's). The update: theta gets .220625 e3 + .779375 e2 + .4225 [-.5, -1.5, 0] =
    [-.21125, .145625, .220625]; alpha's gradient .4225 [-.75, .75] = [-.316875, .316875], and Adam's first
    step moves alpha by its lr (1e-3) against the gradient's sign: [.501, .499]."""
    w = make()
    model, _ = step(w, {"a": torch.tensor([0.0, 0.0, -2.0]), "b": torch.tensor([0.0, -2.0, 0.0])})
    np.testing.assert_allclose(w.last_w, [0.220625, 0.779375, 0.4225], atol=1e-5)
    np.testing.assert_allclose(w.lam, [0.220625, 0.779375], atol=1e-5)
    assert w.nu == pytest.approx(0.4225, abs=1e-5)
    torch.testing.assert_close(model.theta.grad, torch.tensor([-0.21125, 0.145625, 0.220625]), **TOL)
    torch.testing.assert_close(w.alpha.grad, torch.tensor([-0.316875, 0.316875]), **TOL)
    torch.testing.assert_close(w.alpha.detach(), torch.tensor([0.501, 0.499]))
    e = math.exp(0.002)
    assert w.weights() == pytest.approx({"a": e / (e + 1), "b": 1 / (e + 1)})


def test_main_tasks_only_at_the_upper_level():
    """forum_upper=main with a the only main task, second batch as above: one objective, so lambda = [1];
    nu = max(pi_a, 0) = .1 (w_q's unconstrained optimum (c/2 - <g_a, grad q>) / 3.625 = .05 is below it).
    theta gets g_a + .1 [-.5, -1.5, 0] = [-.05, -.15, 1]; alpha's gradient .1 [-.75, .75] = [-.075, .075]."""
    w = make(forum_upper="main")
    model, _ = step(w, {"a": torch.tensor([0.0, 0.0, -2.0]), "b": torch.tensor([0.0, -2.0, 0.0])}, primary=("a",))
    np.testing.assert_allclose(w.last_w, [1.0, 0.1], atol=1e-5)
    assert w.nu == pytest.approx(0.1, abs=1e-6)
    torch.testing.assert_close(model.theta.grad, torch.tensor([-0.05, -0.15, 1.0]), **TOL)
    torch.testing.assert_close(w.alpha.grad, torch.tensor([-0.075, 0.075]), **TOL)


@pytest.mark.parametrize("epoch_steps", [1, 50])
def test_lambda_is_averaged_at_the_epochs_rate(epoch_steps):
    """lambda_k = lambda_{k-1} + (w_k - lambda_{k-1}) / (e + 1)^(3/4), e the epoch from 0: with one step an
    epoch the second step's rate is 2^(-3/4); with 50, both steps are in epoch 0 (rate 1: lambda = w)."""
    w = make(forum_epoch_steps=epoch_steps)
    meta = {"a": torch.tensor([0.0, 0.0, -2.0]), "b": torch.tensor([0.0, -2.0, 0.0])}
    step(w, meta)
    first = w.last_w.copy()
    step(w, meta)   # alpha moved: another lower level, another QP solution
    second = w.last_w
    assert not np.allclose(first, second, atol=1e-7, rtol=0)
    rate = 2 ** -0.75 if epoch_steps == 1 else 1.0
    np.testing.assert_allclose(w.lam, first[:2] + rate * (second[:2] - first[:2]), rtol=1e-12, atol=1e-12)


def test_bad_settings_and_a_missing_second_batch_are_refused():
    for bad, match in [({"forum_rho": -0.1}, "forum_rho must be >= 0"),
                       ({"forum_inner_lr": 0.0}, "forum_inner_lr, forum_outer_lr positive"),
                       ({"forum_outer_lr": -1.0}, "forum_inner_lr, forum_outer_lr positive"),
                       ({"forum_inner_steps": 0}, "forum_inner_steps and forum_epoch_steps must be at least 1"),
                       ({"forum_epoch_steps": 0}, "forum_inner_steps and forum_epoch_steps must be at least 1"),
                       ({"forum_upper": "primary"}, "forum_upper must be all or main")]:
        with pytest.raises(ConfigError, match=match):
            make(**bad)
    with pytest.raises(ConfigError, match="unknown setting weighting_args.forum_phi"):
        resolve_args("forum", {"forum_phi": 0.1})
    w = make()
    assert w.needs.second_stream and w.needs.every_task and w.needs.single_process
    model = Quadratic()
    with pytest.raises(ConfigError, match="lookahead"):
        w.backward(GivenStep(model.losses_of(TRAIN), model))


def test_the_contract_of_every_method():
    """The registry's checks (finite non-zero gradients everywhere, a non-finite loss reaching the update)."""
    check_weighting("forum")


def test_a_short_real_run_has_finite_losses(data_dir):
    curve = short_real_run("hard-forum", data_dir)
    assert all(math.isfinite(v) for v in curve[-1]["weights"].values())
