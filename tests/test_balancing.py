"""LibMTL's balancing methods (stch, db_mtl, imtl, moco) against answers worked by hand from their papers'
equations; then trained a few steps on real data, and a non-finite loss stopping the run as for every method."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lepton_bench.errors import ConfigError, TrainingError
from lepton_bench.methods import WEIGHTINGS, GivenStep, resolve_args
from lepton_bench.methods.moco import project_onto_simplex
from lepton_bench.run.train import next_batches, prepare, run, train_step
from lepton_bench.tasks import TaskSpec
from lepton_bench.variants import make_config

from . import test_weighting as weighting_tests
from .conftest import TINY

TASKS = ["a", "b"]
METHODS = ["stch", "db_mtl", "imtl", "moco"]
SQ2 = math.sqrt(2)


def make(name, **cfg):
    return WEIGHTINGS.get(name)(TASKS, resolve_args(name, cfg), seed=0).to(torch.device("cpu"))


def losses(*values):
    return {t: torch.tensor(float(v), requires_grad=True) for t, v in zip(TASKS, values, strict=True)}


class Toy(weighting_tests.Toy):
    """theta (2 numbers) is shared; each task has its own scalar. At theta = 0, a = b = 0:
    L_a = c_a + g_a.theta + a, L_b = c_b + g_b.theta + 2 b, so grad_theta L_t = g_t, L_t = c_t,
    dL_a/da = 1, dL_b/db = 2 (c_t = 1 by default: log-losses need positive losses)."""

    def losses(self, ga, gb, ca=1.0, cb=1.0):
        return super().losses(ga, gb, ca, cb)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            p.grad = None


# ---------------------------------------------------------------- stch

def test_stch_official_warms_up_on_log_losses_then_takes_log_ratios_to_the_nadir():
    """The authors' MTL code (Xi-L/STCH, LibMTL), by hand, T = 2, mu = 1, 1 warm-up step and 2 nadir steps.
    Steps 1-3: total = log L_a + log L_b, so d total / d L_t = 1 / L_t. The nadir is the mean of steps 2
    and 3's losses: z = ((1 + 1) / 2, (4 + 8) / 2) = (1, 6). Step 4, L = (0.5, 2): l = log(L / z) =
    (log 0.5, log(1/3)); total = T mu log(e^l_a + e^l_b) = 2 log(0.5 + 1/3); d total / d L_t =
    T softmax(l)_t / L_t = 2 (L_t / z_t) / (sum_s L_s / z_s) / L_t = 2 / (z_t (0.5 + 1/3)) = (2.4, 0.4)."""
    w = make("stch", stch_warmup_steps=1, stch_nadir_steps=2)
    for values in ((2, 3), (1, 4), (1, 8)):
        L = losses(*values)
        total = w.combine(L)
        assert total.item() == pytest.approx(math.log(values[0]) + math.log(values[1]), rel=1e-6)
        total.backward()
        assert L["a"].grad.item() == pytest.approx(1 / values[0]) and L["b"].grad.item() == pytest.approx(1 / values[1])
    L = losses(0.5, 2)
    total = w.combine(L)
    assert total.item() == pytest.approx(2 * math.log(0.5 + 1 / 3), rel=1e-6)
    total.backward()
    assert L["a"].grad.item() == pytest.approx(2.4, rel=1e-5) and L["b"].grad.item() == pytest.approx(0.4, rel=1e-5)
    assert w.weights() == pytest.approx({"a": 2.4, "b": 0.4}, rel=1e-5)
    with pytest.raises(ConfigError, match="stch_form"):
        make("stch", stch_form="tchebycheff")


def test_stch_by_hand():
    """L = [1, 3], lambda = [1/2, 1/2], mu = 1, z = 0: g = log(e^0.5 + e^1.5); dg/dL_t = lambda_t p_t with
    p = softmax([0.5, 1.5]) = [1 - s, s], s = 1 / (1 + e^-1)."""
    w = make("stch", stch_mu=1.0, stch_form="paper")
    L = losses(1, 3)
    total = w.combine(L)
    assert total.item() == pytest.approx(math.log(math.exp(0.5) + math.exp(1.5)), rel=1e-6)
    total.backward()
    s = 1 / (1 + math.exp(-1))
    assert L["a"].grad.item() == pytest.approx(0.5 * (1 - s), rel=1e-6)
    assert L["b"].grad.item() == pytest.approx(0.5 * s, rel=1e-6)
    assert w.weights() == pytest.approx({"a": 0.5 * (1 - s), "b": 0.5 * s}, rel=1e-6)


def test_stch_tends_to_the_tchebycheff_max_and_reads_preferences():
    """mu -> 0: max_t lambda_t L_t = 1.5 for L = [1, 3]. Preferences {a: 3, b: 1} -> lambda = [3/4, 1/4]:
    lambda L = [3/4, 3/4], so g = mu log(2 e^(0.75/mu)) = 0.75 + mu log 2, and the weights are equal halves
    of lambda: [3/8, 1/8]."""
    assert make("stch", stch_mu=1e-3, stch_form="paper").combine(losses(1, 3)).item() == pytest.approx(1.5, abs=1e-3)
    w = make("stch", stch_mu=0.1, stch_preference={"a": 3.0}, stch_form="paper")
    assert w.combine(losses(1, 3)).item() == pytest.approx(0.75 + 0.1 * math.log(2), rel=1e-6)
    assert w.weights() == pytest.approx({"a": 3 / 8, "b": 1 / 8})
    with pytest.raises(ConfigError, match="not in this run: z"):
        make("stch", stch_preference={"z": 1.0})
    with pytest.raises(ConfigError, match="stch_mu must be positive"):
        make("stch", stch_mu=0.0)


def test_stch_is_stable_for_large_losses():
    total = make("stch", stch_mu=0.01, stch_form="paper").combine(losses(1000, 10))
    assert total.item() == pytest.approx(500.0, rel=1e-6)


# ---------------------------------------------------------------- db_mtl

def test_db_mtl_by_hand():
    """g_a = [2, 0], L_a = 2 -> grad log L_a = [1, 0]; g_b = [0, 1], L_b = 4 -> [0, 1/4].
    beta = 0.9, sigma = 0. Step 1: EMA = 0.1 rows = [.1, 0], [0, .025]; norms .1, .025; factors 1, 4:
    update = [.1, 0] + 4 [0, .025] = [.1, .1]. Step 2 (same rows): EMA = .9 EMA + .1 rows = [.19, 0],
    [0, .0475]: update [.19, .19]. Task scalars: d log L_a / da = 1/2, d log L_b / db = 2/4."""
    w, model = make("db_mtl"), Toy()
    for expected in ([0.1, 0.1], [0.19, 0.19]):
        model.zero_grad()
        assert w.backward(GivenStep(model.losses([2.0, 0.0], [0.0, 1.0], ca=2.0, cb=4.0), model)) is None
        torch.testing.assert_close(model.theta.grad, torch.tensor(expected))
        assert model.a.grad.item() == pytest.approx(0.5) and model.b.grad.item() == pytest.approx(0.5)
    assert w.weights() == pytest.approx({"a": 1.0, "b": 4.0})


def test_db_mtl_decays_beta():
    """sigma = 1: beta_1 = .9, beta_2 = .45. Rows [1, 0], [0, 1/4] as above: step 2 EMA_a = .45 * .1 + .55 = .595,
    EMA_b = .595 / 4: update .595 [1, 1]."""
    w, model = make("db_mtl", db_beta_sigma=1.0), Toy()
    for _ in range(2):
        model.zero_grad()
        w.backward(GivenStep(model.losses([2.0, 0.0], [0.0, 1.0], ca=2.0, cb=4.0), model))
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.595, 0.595]))


# ---------------------------------------------------------------- imtl

def test_imtl_by_hand():
    """IMTL-G on g_a = [1, 0], g_b = [-1, 1] (s = 0): g = alpha g_a + (1 - alpha) g_b = [2 alpha - 1, 1 - alpha];
    equal projections on u_a = [1, 0], u_b = [-1, 1]/sqrt 2: 2 alpha - 1 = (2 - 3 alpha)/sqrt 2, so
    alpha = (2 + sqrt 2)/(3 + 2 sqrt 2) = 2 - sqrt 2 and g = [3 - 2 sqrt 2, sqrt 2 - 1].
    With s = [log 2, 0] the rows are the scaled losses' gradients [2, 0], [-1, 1]: alpha' [2, 0] +
    (1 - alpha') [-1, 1] with 3 alpha' - 1 = (2 - 4 alpha')/sqrt 2 gives alpha' = sqrt 2 - 1 and
    g = sqrt 2 [3 - 2 sqrt 2, sqrt 2 - 1] (the same direction, IMTL-G's, scaled).
    IMTL-L: d/ds_t (e^s_t L_t - s_t) = e^s_t L_t - 1 = [2 * 1 - 1, 3 - 1] for L = [1, 3]; task scalars get their
    scaled loss's gradient: e^s_a * 1 = 2, 1 * 2 = 2."""
    w, model = make("imtl"), Toy()
    assert w.parameters() == [w.log_scales]
    assert w.backward(GivenStep(model.losses([1.0, 0.0], [-1.0, 1.0], ca=1.0, cb=3.0), model)) is None
    torch.testing.assert_close(model.theta.grad, torch.tensor([3 - 2 * SQ2, SQ2 - 1]))
    assert w.weights() == pytest.approx({"a": 2 - SQ2, "b": SQ2 - 1})
    torch.testing.assert_close(w.log_scales.grad, torch.tensor([0.0, 2.0]))   # e^0 L - 1 = [0, 2]

    w, model = make("imtl"), Toy()
    with torch.no_grad():
        w.log_scales.copy_(torch.tensor([math.log(2), 0.0]))
    w.backward(GivenStep(model.losses([1.0, 0.0], [-1.0, 1.0], ca=1.0, cb=3.0), model))
    torch.testing.assert_close(model.theta.grad, SQ2 * torch.tensor([3 - 2 * SQ2, SQ2 - 1]))
    torch.testing.assert_close(w.log_scales.grad, torch.tensor([1.0, 2.0]))
    assert model.a.grad.item() == pytest.approx(2.0) and model.b.grad.item() == pytest.approx(2.0)
    assert w.weights() == pytest.approx({"a": 2 * (SQ2 - 1), "b": 2 - SQ2})   # alpha_t e^s_t, raw losses


def test_imtl_l_objective_has_its_optimum_at_unit_scaled_losses():
    """min over s of e^s L - s: s = -log L, where the scaled loss e^s L is 1."""
    w = make("imtl")
    with torch.no_grad():
        w.log_scales.copy_(-torch.log(torch.tensor([2.0, 5.0])))
    L = losses(2, 5)
    w.combine(L).backward()
    torch.testing.assert_close(w.log_scales.grad, torch.zeros(2))


# ---------------------------------------------------------------- moco

def test_simplex_projection():
    torch.testing.assert_close(project_onto_simplex(torch.tensor([0.6, 0.6])), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(project_onto_simplex(torch.tensor([0.9, -0.5])), torch.tensor([1.0, 0.0]))
    # [.2, .5, 1.2]: theta with two positive entries: (.5 + 1.2 - 1)/2 = .35 -> [0, .15, .85]
    torch.testing.assert_close(project_onto_simplex(torch.tensor([0.2, 0.5, 1.2])), torch.tensor([0.0, 0.15, 0.85]))


def test_moco_official_rescales_each_gradient_to_its_loss_and_takes_a_softmax():
    """LibMTL's MoCo (after the authors' code), by hand: g_a = [3, 4], L_a = 2; g_b = [0, 1], L_b = 1.
    h = g / |g| L = [[1.2, 1.6], [0, 1]]; y = .5 h = [[.6, .8], [0, .5]]; Y Y^T = [[1, .4], [.4, .25]];
    lambda = softmax([.5, .5] - .1 Y Y^T [.5, .5]) = softmax([.43, .4675]) = [.4906261, .5093739];
    update = lambda^T Y = [.2943757, .6471878]. The task scalars get their own gradients 1 and 2."""
    w, model = make("moco"), Toy()
    w.backward(GivenStep(model.losses([3.0, 4.0], [0.0, 1.0], ca=2.0, cb=1.0), model))
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.2943757, 0.6471878]))
    assert w.weights() == pytest.approx({"a": 0.4906261, "b": 0.5093739}, rel=1e-6)
    assert model.a.grad.item() == 1.0 and model.b.grad.item() == 2.0
    with pytest.raises(ConfigError, match="moco_form"):
        make("moco", moco_form="libmtl")


def test_moco_by_hand():
    """g_a = [1, 0], g_b = [0, 2]; beta = .5, gamma = .1 (k = 1: no decay yet), rho = 0.
    y = 0 - .5 (0 - g) = [[.5, 0], [0, 1]]; Y Y^T = diag(.25, 1); lambda = [.5, .5] - .1 [.125, .5]
    = [.4875, .45], projected (sum .9375: + .03125 each) = [.51875, .48125]; update = lambda^T Y
    = [.259375, .48125]. Task scalars get their own gradients 1 and 2.
    Step 2 (same rows): beta_2 = .5/sqrt 2, gamma_2 = .1/sqrt 2; y_t += beta_2 (g_t - y_t)."""
    w, model = make("moco", moco_form="paper"), Toy()
    assert w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 2.0]), model)) is None
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.259375, 0.48125]))
    assert model.a.grad.item() == 1.0 and model.b.grad.item() == 2.0
    assert w.weights() == pytest.approx({"a": 0.51875, "b": 0.48125})
    model.zero_grad()
    w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 2.0]), model))
    b2, g2 = 0.5 / SQ2, 0.1 / SQ2
    ya, yb = 0.5 + b2 * 0.5, 1 + b2 * 1    # y_a = [ya, 0], y_b = [0, yb]: Y Y^T = diag(ya^2, yb^2)
    lam = torch.tensor([0.51875 - g2 * ya ** 2 * 0.51875, 0.48125 - g2 * yb ** 2 * 0.48125])
    lam = lam + (1 - lam.sum()) / 2
    torch.testing.assert_close(model.theta.grad, torch.tensor([lam[0] * ya, lam[1] * yb]))


def test_moco_rho_and_a_projection_to_a_vertex():
    """rho = 10, gamma = .1, rows [1, 0], [0, 2] -> y = diag(.5, 1): (Y Y^T + 10 I) lambda = [5.125, 5.5];
    lambda - .1 that = [-.0125, -.05] -> projected: + (1 + .0625)/2 = [.51875, .48125] (the same as rho = 0:
    rho I shifts both equally). With gamma = 3, rho = 0: [.5 - .375, .5 - 1.5] = [.125, -1]: an equal shift
    would leave b negative, so the projection is the vertex [1, 0], and the update y_a = [.5, 0]."""
    w, model = make("moco", moco_rho=10.0, moco_form="paper"), Toy()
    w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 2.0]), model))
    assert w.weights() == pytest.approx({"a": 0.51875, "b": 0.48125})
    w, model = make("moco", moco_gamma=3.0, moco_form="paper"), Toy()
    w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 2.0]), model))
    assert w.weights() == {"a": 1.0, "b": 0.0}
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.5, 0.0]))


@pytest.mark.parametrize("name", ["db_mtl", "moco"])
def test_moving_average_methods_refuse_feature_jacobians(name):
    with pytest.raises(ConfigError, match="jacobian=features is not for it"):
        make(name, jacobian="features")


# ---------------------------------------------------------------- non-finite losses, real training

@pytest.mark.parametrize("name", METHODS)
def test_a_non_finite_loss_passes_through_to_the_runs_check(name):
    """Like every method: no error inside the weighting; a loss weighting returns its (non-finite) combined
    loss, a gradient method None, and the run's check names the task (next test)."""
    model, w = Toy(), make(name)
    L = model.losses([1.0, 0.0], [0.0, 2.0])
    L["a"] = L["a"] * float("nan")
    total = w.backward(GivenStep(L, model))
    assert total is None if name != "stch" else math.isnan(total.item())
    assert not torch.isfinite(model.theta.grad).all()   # the non-finite loss reaches the gradients


def tiny(name, data_dir, steps, extra=()):
    return make_config("hard-ew", overrides=[*TINY, f"train.steps={steps}", f"weighting={name}", *extra],
                       device="cpu", data_dir=str(data_dir), limit_eval=24)


@pytest.mark.parametrize("name", METHODS)
def test_trains_a_real_model_a_few_steps(name, data_dir):
    """The three default tasks (image, text, tagging) under hard sharing, through the run's train_step:
    shared and every task's parameters move, and so do the method's own (IMTL's loss scales)."""
    s = prepare(tiny(name, data_dir, steps=3))
    shared, own = s.model.parameter_split()
    groups = {"shared": shared, **own}
    before = {id(p): p.detach().clone() for p in s.model.parameters()}
    own_params = [p.detach().clone() for p in s.weighting.parameters()]
    for step in range(1, 4):
        out = train_step(s, next_batches(s, step))
        assert all(torch.isfinite(v) for v in out.values())
    for group, params in groups.items():
        assert any(not torch.equal(before[id(p)], p.detach()) for p in params), f"{name}: {group} did not move"
    for b, p in zip(own_params, s.weighting.parameters(), strict=True):
        assert not torch.equal(b, p.detach())
    w = s.weighting.weights()
    assert set(w) == set(s.names) and all(math.isfinite(v) for v in w.values())


@pytest.mark.parametrize("name", METHODS)
def test_a_non_finite_task_loss_stops_the_run_naming_the_task(name, data_dir, monkeypatch):
    real_loss = TaskSpec.loss
    monkeypatch.setattr(TaskSpec, "loss", lambda self, *a, **k: real_loss(self, *a, **k) * float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) for task cifar10 at step 1"):
        run(tiny(name, data_dir, steps=2))


@pytest.mark.parametrize("jacobian", ["params", "features"])
def test_imtl_with_unit_scales_is_torchjds_imtl_g(jacobian):
    """At s = 0 (its start) IMTL's shared update is IMTL-G's (torchjd, registered as imtl_g), on the shared
    parameters or, with jacobian=features, on the shared features of one input group (the paper's form)."""
    from lepton_bench.config import ModelConfig
    from lepton_bench.models import TaskIO, build_model

    ios = [TaskIO("a", "text", "class", 2, 20, 6, group="g"), TaskIO("b", "text", "tag", 3, 20, 6, group="g")]
    torch.manual_seed(0)
    batch = {"ids": torch.randint(2, 20, (4, 6)), "lengths": torch.full((4,), 6)}
    ya, yb = torch.tensor([0, 1, 1, 0]), torch.randint(0, 3, (4, 6))
    grads = {}
    for name in ("imtl", "imtl_g"):
        torch.manual_seed(1)
        model = build_model("hard", ios, ModelConfig(dim=8, depth=1, heads=2, dropout=0.0)).eval()
        w = WEIGHTINGS.get(name)(["a", "b"], resolve_args(name, {"jacobian": jacobian})).to(torch.device("cpu"))
        kept = {}
        out = model.forward_group(["a", "b"], batch, kept)
        (z,) = kept.values()
        L = {"a": nn.functional.cross_entropy(out["a"], ya),
             "b": nn.functional.cross_entropy(out["b"].flatten(0, 1), yb.flatten())}
        w.backward(GivenStep(L, model, given_features=z))
        grads[name] = [p.grad for p in model.parameters()]
    for g, e in zip(grads["imtl"], grads["imtl_g"], strict=True):
        torch.testing.assert_close(g, e)
