"""MOML against numbers worked by hand from LibMTL's ``Trainer.bacth_forward_MOML`` (and, with
``moml_form=original``, from the authors' NeurIPS code, Baijiong-Lin/MOML ``MTL/moml_office.py``): the virtual
step, the exact hypergradients -eta g_p^T G_f^T J, the min-norm solver, Adam on the logits; its hypergradient
against autograd through a ``create_graph`` virtual step (the authors' way); its settings' checks; a real run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import lepton_bench.methods.moml  # noqa: F401  (registers "moml")
from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, GivenStep, Lookahead, resolve_args
from lepton_bench.methods.moml import min_norm_element
from lepton_bench.testing import check_weighting

from .conftest import short_real_run

TRAIN = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 3.0])}   # the step's batch: L_t = |theta - c_t|^2 / 2
META = {"a": torch.tensor([2.0, 0.0]), "b": torch.tensor([0.0, 2.0])}    # the second stream's batch


class Quadratic(nn.Module):
    """theta is shared; task t's loss on batch c is |theta - c_t|^2 / 2, its gradient theta - c_t. A buffer
    counts the forward passes (as a normalisation layer's statistics would change)."""

    def __init__(self, dim=2):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("forwards", torch.zeros(()))

    def losses_of(self, batches):
        self.forwards += 1
        return {t: 0.5 * ((self.theta - c) ** 2).sum() for t, c in batches.items()}


def make(tasks=("a", "b"), **cfg):
    """LibMTL's settings unless told (the hand computations use its eta 0.1); the defaults are the authors'."""
    cfg = {"moml_form": "libmtl", "moml_inner_lr": 0.1, **cfg}
    return WEIGHTINGS.get("moml")(list(tasks), resolve_args("moml", cfg), seed=0).to(torch.device("cpu"))


def step(w, train=TRAIN, meta=META, primary=("a", "b"), dim=2):
    model = Quadratic(dim)
    ahead = Lookahead(model.losses_of, train, meta, 123.0, list(primary))   # lr, decay: unused by MOML
    total = w.backward(GivenStep(model.losses_of(train), model, given_lookahead=ahead))
    return model, total


def test_two_tasks_in_conflict_the_normalised_min_norm_point_is_zero():
    """LibMTL's defaults: eta = 0.1, alpha = (1/2, 1/2), s = (1/2, 1/2), theta = 0.
    G_f = [theta - c_a; theta - c_b] = [[-1, 0], [0, -3]]; theta' = -0.1 (1/2)(-1, -3) = (.05, .15).
    Outer gradients g_a = theta' - m_a = (-1.95, .15), g_b = theta' - m_b = (.05, -1.85);
    M = g G_f^T: M_a = (1.95, -.45), M_b = (-.05, 5.55). J = diag(s) - s s^T = (1/4)[[1, -1], [-1, 1]], so
    h_p = -0.1 M_p J = -0.025 (M_p1 - M_p2)(1, -1): h_a = (-.06, .06), h_b = (.14, -.14).
    l2-normalised: u_a = (-1, 1)/sqrt2 = -u_b; Gramian [[1, -1], [-1, 1]]: gamma = -(-1 - 1)/(1 + 1 + 2) = 1/2;
    sol = (1/2, 1/2), alpha's gradient sol . u = 0: Adam's first step moves nothing, s stays (1/2, 1/2).
    Real update: (1/2)(-1, 0) + (1/2)(0, -3) = (-.5, -1.5); combined loss (1/2)(1/2) + (1/2)(9/2) = 2.5."""
    w = make()
    model, total = step(w)
    np.testing.assert_allclose(w.hyper, [[-0.06, 0.06], [0.14, -0.14]], rtol=1e-5)
    np.testing.assert_allclose(w.sol, [0.5, 0.5])
    torch.testing.assert_close(w.alpha.detach(), torch.tensor([0.5, 0.5]))
    assert w.weights() == pytest.approx({"a": 0.5, "b": 0.5})
    assert torch.equal(model.theta.detach(), torch.zeros(2))   # the look-ahead put theta back exactly
    torch.testing.assert_close(model.theta.grad, torch.tensor([-0.5, -1.5]))
    torch.testing.assert_close(total, torch.tensor(2.5))
    assert float(model.forwards) == 1   # the step's own forward; the look-ahead's was undone, no fresh one


def test_the_original_form_steps_along_the_raw_hypergradients():
    """The same step, ``moml_form=original`` (the authors' NeurIPS code): the same sol = (1/2, 1/2), but alpha's
    gradient is sol . h = (1/2)((-.06, .06) + (.14, -.14)) = (.04, -.04); Adam's first step moves each logit by
    lr = 1e-3 against its gradient's sign: alpha = (.499, .501), s_a = 1 / (1 + e^.002) = .4995;
    the real update s_a (-1, 0) + s_b (0, -3)."""
    w = make(moml_form="original")
    model, total = step(w)
    np.testing.assert_allclose(w.sol, [0.5, 0.5])
    torch.testing.assert_close(w.alpha.detach(), torch.tensor([0.499, 0.501]))
    sa = 1 / (1 + math.exp(0.002))
    assert w.weights() == pytest.approx({"a": sa, "b": 1 - sa}, rel=1e-6)
    torch.testing.assert_close(model.theta.grad, torch.tensor([-sa, -3 * (1 - sa)]))
    torch.testing.assert_close(total, torch.tensor(0.5 * sa + 4.5 * (1 - sa)))


def test_loss_normalisation_as_the_authors_nyuv2_code():
    """``moml_form=original, moml_normalize=loss`` (their NYUv2 setting): outer losses F_a = (1.95^2 + .15^2)/2 =
    1.9125, F_b = (.05^2 + 1.85^2)/2 = 1.7125; h_a / F_a = -p (1, -1), h_b / F_b = q (1, -1) with p = .06 / 1.9125,
    q = .14 / 1.7125. Two anti-parallel vectors: gamma = (v2v2 - v1v2) / (v1v1 + v2v2 - 2 v1v2) = q / (p + q)
    (their min-norm point is 0). Alpha's gradient sol . h = (-.06 q + .14 p) / (p + q) (1, -1), and
    .14 p - .06 q = .0084 (1/1.9125 - 1/1.7125) < 0: alpha = (.501, .499). (LibMTL's form: sol . h / F = 0.)"""
    w = make(moml_form="original", moml_normalize="loss")
    step(w)
    p, q = 0.06 / 1.9125, 0.14 / 1.7125
    np.testing.assert_allclose(w.sol, [q / (p + q), p / (p + q)], rtol=1e-5)
    assert w.alpha.detach().tolist() == pytest.approx([0.501, 0.499], abs=1e-7)
    libmtl = make(moml_normalize="loss")
    step(libmtl)
    np.testing.assert_allclose(libmtl.sol, w.sol)
    assert libmtl.alpha.detach().tolist() == pytest.approx([0.5, 0.5], abs=1e-9)


def test_with_one_main_task_its_own_hypergradient_leads():
    """Only a is a main task (b auxiliary), ``moml_upper=main``: one upper-level row, sol = (1); alpha's gradient
    u_a = (-1, 1)/sqrt2: alpha = (.501, .499), the auxiliary task loses weight. By default (``all``, the authors')
    b's objective stays in the upper level: the first test's step, alpha holds."""
    w = make(moml_upper="main")
    step(w, primary=("a",))
    np.testing.assert_allclose(w.hyper, [[-0.06, 0.06]], rtol=1e-5)
    np.testing.assert_allclose(w.sol, [1.0])
    assert w.alpha.detach().tolist() == pytest.approx([0.501, 0.499], abs=1e-7)
    every = make()
    step(every, primary=("a",))
    np.testing.assert_allclose(every.hyper, [[-0.06, 0.06], [0.14, -0.14]], rtol=1e-5)
    assert every.alpha.detach().tolist() == pytest.approx([0.5, 0.5], abs=1e-9)


def test_three_tasks_the_auxiliary_one_loses_weight():
    """Tasks a, b, c (c auxiliary, ``moml_upper=main``), theta = 0 in R^3, c_t = e_t, eta = 0.1, s = 1/3:
    G_f = -I, theta' = (1/30) 1. Main outer batches m_a = 2 e_a, m_b = 2 e_b:
    M_a = g_a G_f^T = -(theta' - 2 e_a) = 2 e_a - (1/30) 1.
    J = (1/3)(I - 1 1^T / 3) removes the constant: h_a = -(0.1/3) 2 (2, -1, -1)/3, h_b likewise on b.
    u_a = -(2, -1, -1)/sqrt6, u_b = -(-1, 2, -1)/sqrt6, u_a . u_b = -1/2: gamma = 1/2, alpha's gradient
    -(1, 1, -2)/(2 sqrt6): alpha = 1/3 + 1e-3 (1, 1, -1). The real update: -s (new s)."""
    tasks = ("a", "b", "c")
    eye = torch.eye(3)
    w = make(tasks, moml_upper="main")
    model, _ = step(w, train=dict(zip(tasks, eye, strict=True)), meta={"a": 2 * eye[0], "b": 2 * eye[1], "c": eye[2]},
                    primary=("a", "b"), dim=3)
    k = -0.2 / 9
    np.testing.assert_allclose(w.hyper, [[2 * k, -k, -k], [-k, 2 * k, -k]], rtol=1e-5)
    np.testing.assert_allclose(w.sol, [0.5, 0.5])
    assert w.alpha.detach().tolist() == pytest.approx([1 / 3 + 1e-3, 1 / 3 + 1e-3, 1 / 3 - 1e-3], abs=1e-7)
    s = torch.softmax(w.alpha.detach(), -1)
    torch.testing.assert_close(model.theta.grad, -s)


def test_the_min_norm_solver_by_hand():
    """x1 = (1, 0), x2 = (0, 1), x3 = (1, 1): the best pair is (x1, x2) at 1/2 (cost 1/2; the pairs with x3 cost 1,
    clipped at .999). A Frank-Wolfe step: -G sol = -(1/2, 1/2, 1), centred (1/6, 1/6, -1/3), t = 1, the point
    (2/3, 2/3, -1/3) projects back onto (1/2, 1/2, 0): no change, sol = (1/2, 1/2, 0). Two parallel vectors:
    LibMTL's clip (.999, .001); one vector: weight 1."""
    np.testing.assert_allclose(min_norm_element(np.array([[1.0, 0, 1], [0, 1, 1], [1, 1, 2]])), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(min_norm_element(np.array([[1.0, 1.0], [1.0, 1.0]])), [0.999, 0.001])
    np.testing.assert_allclose(min_norm_element(np.array([[4.0]])), [1.0])
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])   # the origin in the hull: the min-norm point nears 0
    sol = min_norm_element(X @ X.T)
    assert sol.sum() == pytest.approx(1.0) and (sol >= 0).all() and np.linalg.norm(sol @ X) < 1e-2


class Net(nn.Module):
    """A small nonlinear model: a shared layer and one head per task (so G_f has zeros on the other heads)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(3, 4)
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in "abc"})

    def losses_of(self, batches, params=None):
        def f(x):
            if params is None:
                return {t: self.heads[t](torch.tanh(self.body(x)))[:, 0] for t in "abc"}
            return {t: torch.func.functional_call(self, params, (x,))[t] for t in "abc"}
        return {t: ((f(x)[t] - y) ** 2).mean() for t, (x, y) in batches.items()}

    def forward(self, x):
        return {t: self.heads[t](torch.tanh(self.body(x)))[:, 0] for t in "abc"}


def test_the_hypergradient_is_autograds_through_the_virtual_step():
    """The authors' NeurIPS code differentiates F_p(theta - eta grad_theta sum_t s_t L_t) w.r.t. the logits by a
    ``create_graph`` virtual step; the closed form -eta g_p^T G_f^T J is the same (G_f does not depend on alpha)."""
    gen = torch.Generator().manual_seed(1)
    batch = lambda: {t: (torch.randn(5, 3, generator=gen), torch.randn(5, generator=gen)) for t in "abc"}  # noqa: E731
    train, meta = batch(), batch()
    model = Net()
    w = make(("a", "b", "c"), moml_inner_lr=0.3, moml_upper="main")
    with torch.no_grad():
        w.alpha.copy_(torch.tensor([0.2, -0.1, 0.4]))
    alpha = w.alpha.detach().clone().requires_grad_(True)
    names = [n for n, _ in model.named_parameters()]
    theta = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    inner = model.losses_of(train, dict(zip(names, theta, strict=True)))
    s = torch.softmax(alpha, -1)
    grads = torch.autograd.grad(sum(s[i] * inner[t] for i, t in enumerate("abc")), theta, create_graph=True)
    fast = dict(zip(names, [p - 0.3 * g for p, g in zip(theta, grads, strict=True)], strict=True))
    outer = model.losses_of(meta, fast)
    expected = [torch.autograd.grad(outer[t], alpha, retain_graph=True)[0].tolist() for t in "ab"]
    ahead = Lookahead(model.losses_of, train, meta, 1.0, ["a", "b"])   # c auxiliary
    before = [p.detach().clone() for p in model.parameters()]
    w.backward(GivenStep(model.losses_of(train), model, given_lookahead=ahead))
    np.testing.assert_allclose(w.hyper, expected, rtol=1e-4, atol=1e-7)
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before, strict=True))


def test_the_contract_checks_and_what_it_needs():
    check_weighting("moml")
    w = make()
    assert w.needs.second_stream and w.needs.every_task and w.needs.single_process
    a = resolve_args("moml", {})   # the authors' NeurIPS code (Office), which ran the published numbers
    assert (a.moml_inner_lr, a.moml_outer_lr, a.moml_normalize, a.moml_form, a.moml_upper) == \
        (1e-4, 1e-3, "l2", "original", "all")


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="moml_inner_lr and moml_outer_lr must be positive, not 0.0 and 0.001"):
        make(moml_inner_lr=0.0)
    with pytest.raises(ConfigError, match="moml_inner_lr and moml_outer_lr must be positive, not 0.1 and -1.0"):
        make(moml_outer_lr=-1.0)
    with pytest.raises(ConfigError, match="moml_normalize must be l2, loss, loss\\+ or none, not 'max'"):
        make(moml_normalize="max")
    with pytest.raises(ConfigError, match="moml_form must be libmtl or original, not 'paper'"):
        make(moml_form="paper")
    with pytest.raises(ConfigError, match="moml_upper must be all or main, not 'primary'"):
        make(moml_upper="primary")
    with pytest.raises(ConfigError, match="unknown setting weighting_args.inner_lr of weighting moml"):
        resolve_args("moml", {"inner_lr": 0.1})
    with pytest.raises(ConfigError, match="needs a loss of every task"):
        make().combine({"a": torch.tensor(1.0)})
    model = Quadratic()
    with pytest.raises(ConfigError, match="lookahead"):
        make().backward(GivenStep(model.losses_of(TRAIN), model))


def test_a_short_real_run(data_dir):
    for p in short_real_run("hard-moml", data_dir):
        assert sum(p["weights"].values()) == pytest.approx(1.0) and all(v > 0 for v in p["weights"].values())
