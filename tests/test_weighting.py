"""Every weighting against answers worked out by hand; how aggregated gradients reach parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, GivenStep, Lookahead, resolve_args
from lepton_bench.methods.gradient import TwoBatches

TASKS = ["a", "b"]


def make(name, **cfg):
    return WEIGHTINGS.get(name)(TASKS, resolve_args(name, cfg), seed=0).to(torch.device("cpu"))


def losses(*values, grad=True):
    return {t: torch.tensor(float(v), requires_grad=grad) for t, v in zip(TASKS, values, strict=True)}


def test_ew_and_static():
    assert make("ew").combine(losses(1, 2)).item() == 3
    assert make("static", static={"a": 2.0}).combine(losses(1, 2)).item() == 4
    with pytest.raises(ConfigError, match="not in this run: z"):
        make("static", static={"z": 2.0})


def test_uw_loss_form_and_its_optimum():
    w = make("uw")
    L = losses(1.0, 4.0)
    assert w.combine(L).item() == pytest.approx(0.5 * 5)   # s = 0: half the sum
    # d/ds_t [exp(-s_t) L_t / 2 + s_t / 2] = 0 at s_t = log L_t
    with torch.no_grad():
        w.log_vars.copy_(torch.log(torch.tensor([1.0, 4.0])))
    w.combine(L).backward()
    torch.testing.assert_close(w.log_vars.grad, torch.zeros(2))
    assert w.parameters() == [w.log_vars]


def test_dwa_weights_from_loss_histories():
    w = make("dwa", dwa_temperature=2.0)
    w.push(torch.tensor([1.0, 1.0]))
    assert w.weights() == {"a": 1.0, "b": 1.0}   # one window: not enough history
    w.push(torch.tensor([0.5, 2.0]))             # r = [0.5, 2]
    ea, eb = math.exp(0.5 / 2), math.exp(2 / 2)
    assert w.weights()["a"] == pytest.approx(2 * ea / (ea + eb))
    assert w.weights()["b"] == pytest.approx(2 * eb / (ea + eb))


def test_dwa_averages_over_its_window():
    w = make("dwa", dwa_window=2, dwa_temperature=1.0)
    for L in ([1, 1], [1, 1], [2, 1]):   # window averages: [1, 1], then [2, 1] is still open
        w.combine(losses(*L))
    assert w.weights() == {"a": 1.0, "b": 1.0}   # one window closed: no ratio yet
    w.combine(losses(2, 1))
    e2, e1 = math.exp(2), math.exp(1)
    assert w.weights()["a"] == pytest.approx(2 * e2 / (e2 + e1))


def test_dwa_the_step_that_closes_a_window_still_uses_the_windows_weights():
    """The paper fixes an epoch's weights from the two epochs before it: the step that closes window 2
    is weighted by window 2's weights (1, 1), and only window 3 by the new ones (the old code used the
    new weights one step early)."""
    w = make("dwa", dwa_window=1, dwa_temperature=1.0)
    assert w.combine(losses(1, 1)).item() == pytest.approx(2.0)   # closes window 1
    closing = w.combine(losses(2, 1))                              # closes window 2: r = [2, 1]
    assert closing.item() == pytest.approx(3.0)                    # 1 * 2 + 1 * 1, not the new weights
    e2, e1 = math.exp(2), math.exp(1)
    wa, wb = 2 * e2 / (e2 + e1), 2 * e1 / (e2 + e1)
    assert w.combine(losses(1, 1)).item() == pytest.approx(wa + wb)
    assert w.combine(losses(2, 0)).item() != pytest.approx(2.0)    # window 4 is weighted (r of 2 and 3)


def test_rlw_draws_seeded_softmax_weights():
    w1, w2 = make("rlw"), make("rlw")
    draws = []
    for _ in range(3):
        w1.combine(losses(1, 1))
        w2.combine(losses(1, 1))
        assert w1.weights() == w2.weights()
        assert sum(w1.weights().values()) == pytest.approx(1.0)
        draws.append(w1.weights()["a"])
    assert len(set(draws)) == 3


def test_gls_is_the_geometric_mean():
    L = losses(1.0, 4.0)
    total = make("gls").combine(L)
    assert total.item() == pytest.approx(2.0)
    total.backward()   # d sqrt(a b) / da = sqrt(b/a) / 2 = 1
    assert L["a"].grad.item() == pytest.approx(1.0)
    assert L["b"].grad.item() == pytest.approx(0.25)


def test_famo_step_and_update():
    w = make("famo", famo_lr=0.025)
    L = losses(1.0, 2.0)
    total = w.combine(L)     # z = [.5, .5], c = .5/1 + .5/2 = .75
    assert total.item() == pytest.approx((0.5 * math.log(1) + 0.5 * math.log(2)) / 0.75, rel=1e-5)
    total.backward()         # d/dL_t = z_t / (c L_t)
    assert L["a"].grad.item() == pytest.approx(0.5 / 0.75, rel=1e-5)
    assert L["b"].grad.item() == pytest.approx(0.25 / 0.75, rel=1e-5)
    # task a's loss halved, b's did not move: b's logit rises, a's falls (Adam's first step = lr)
    w.after_step(GivenStep(L, None, given_after=losses(0.5, 2.0, grad=False)))
    torch.testing.assert_close(w.xi.detach(), torch.tensor([-0.025, 0.025]), rtol=1e-3, atol=1e-5)
    assert w.weights()["b"] > 0.5


def test_gradnorm_targets_and_update():
    w = make("gradnorm", gradnorm_alpha=1.5)
    L = torch.tensor([1.0, 1.0])
    w.targets(L, torch.tensor([1.0, 1.0]))          # sets L(0)
    t = w.targets(torch.tensor([0.5, 1.0]), torch.tensor([1.0, 3.0]))
    r = torch.tensor([0.5, 1.0]) / 0.75             # relative inverse training rates
    torch.testing.assert_close(t, 2.0 * r ** 1.5)
    # alpha = 0: both target mean(G) = 2: the weaker gradient's weight rises, then sum(w) = T
    w = make("gradnorm", gradnorm_alpha=0.0, gradnorm_lr=0.025)
    w.update(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(w.w.detach(), torch.tensor([1.025, 0.975]), rtol=1e-4, atol=1e-5)


class Toy(nn.Module):
    """theta is shared; each task has its own scalar. L_a = g_a.theta + a, L_b = g_b.theta + 2b. Its
    "features" (for a method that reads them, as LDC-MTL's router) are theta itself."""

    feature_dim, task_names = 2, TASKS

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(2))
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))

    def parameter_split(self):
        return [self.theta], {"a": [self.a], "b": [self.b]}

    def losses(self, ga, gb, ca=0.0, cb=0.0):
        return {"a": ca + torch.tensor(ga) @ self.theta + self.a, "b": cb + torch.tensor(gb) @ self.theta + 2 * self.b}


def aggregate(name, ga, gb, **cfg):
    model = Toy()
    make(name, **cfg).backward(GivenStep(model.losses(ga, gb), model))
    assert model.a.grad.item() == 1.0 and model.b.grad.item() == 2.0   # own task's gradient only
    return model.theta.grad


def test_pcgrad_projects_conflicting_gradients_by_hand():
    # g_a.g_b = -1 < 0: g_a' = g_a - (g_a.g_b/|g_b|^2) g_b = [.5, .5]; g_b' = g_b - (g_b.g_a/|g_a|^2) g_a = [0, 1]
    torch.testing.assert_close(aggregate("pcgrad", [1.0, 0.0], [-1.0, 1.0]), torch.tensor([0.5, 1.5]))


def test_pcgrad_leaves_agreeing_gradients_alone():
    torch.testing.assert_close(aggregate("pcgrad", [1.0, 0.0], [1.0, 1.0]), torch.tensor([2.0, 1.0]))


def test_mgda_is_the_min_norm_point():
    # min over alpha of |alpha [1,0] + (1-alpha) [-1,1]|^2: alpha = 0.6 -> [0.2, 0.4]
    torch.testing.assert_close(aggregate("mgda", [1.0, 0.0], [-1.0, 1.0]), torch.tensor([0.2, 0.4]),
                               rtol=1e-3, atol=1e-3)


def test_gradvac_corrects_each_conflicting_pair_towards_its_target_by_hand():
    """First call, targets phi_hat = 0. g_a = [1, 0], g_b = [-1, 1]: phi = -1/sqrt(2) < 0, so
    g_a += w g_b with w = |g_a| (phi_hat sqrt(1-phi^2) - phi sqrt(1-phi_hat^2)) / (|g_b| sqrt(1-phi_hat^2))
    = 1 (1/sqrt(2)) / sqrt(2) = 1/2 -> [0.5, 0.5]; g_b += (sqrt(2) (1/sqrt(2)) / 1) g_a = g_a -> [0, 1].
    Sum: [0.5, 1.5]."""
    torch.testing.assert_close(aggregate("gradvac", [1.0, 0.0], [-1.0, 1.0]), torch.tensor([0.5, 1.5]))


def test_config_has_equal_cosines_to_every_gradient_by_hand():
    """ConFIG (eq. 2): g_u = unit(A^+ 1) with A the unit gradients' rows: orthogonal rows give
    g_u = [1, 1]/sqrt(2); the length is sum_i g_i . g_u = (2 + 1)/sqrt(2): [1.5, 1.5]."""
    torch.testing.assert_close(aggregate("config", [2.0, 0.0], [0.0, 1.0]), torch.tensor([1.5, 1.5]))


def test_fairgrad_allocates_proportionally_fair_at_alpha_1_by_hand():
    """FairGrad's weights solve G w = w^(-1/alpha); with G = diag(4, 1) and alpha 1: 4 w_a = 1/w_a,
    w_b = 1/w_b -> w = [1/2, 1]: the update J^T w = [2 * 1/2, 1] = [1, 1] (each task the same share)."""
    torch.testing.assert_close(aggregate("fairgrad", [2.0, 0.0], [0.0, 1.0]), torch.tensor([1.0, 1.0]),
                               rtol=1e-4, atol=1e-4)


def test_cr_mogm_smooths_mgdas_weights_across_steps_by_hand():
    """Step 1: J = I, MGDA's weights [1/2, 1/2] (lambda_0 = the first weights). Step 2: J = diag(1, 2),
    MGDA's [0.8, 0.2] (min-norm point [0.8, 0.4]); smoothed 0.9 [.5, .5] + 0.1 [.8, .2] = [.53, .47]:
    the update J^T lambda = [0.53, 0.94]."""
    model, w = Toy(), make("cr_mogm")
    w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 1.0]), model))
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.5, 0.5]), rtol=1e-3, atol=1e-3)
    model.theta.grad = None
    w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 2.0]), model))
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.53, 0.94]), rtol=1e-3, atol=1e-3)


def test_excess_mtl_records_the_first_excess_risks_as_its_baseline_then_updates_as_the_authors():
    """The authors' code (uiuctml/ExcessMTL, LibMTL): S += g^2, E_t = g_t^T diag(sqrt(S + 1e-7))^-1 g_t.

    By hand, eta = 0.01. Step 1, rows g_a = [1, 0], g_b = [0, 2]: E^0 = (1, 2) is the baseline, the weights
    stay (1, 1): theta.grad = g_a + g_b = [1, 2], heads their own gradients (1, 2). Step 2, rows [2, 0],
    [0, 2]: S = (5, 8), E = (4 / sqrt 5, 4 / sqrt 8) = (1.78885, 1.41421), E / E^0 = (1.78885, 0.70711);
    w = 2 softmax(0.01 E / E^0) = (1.0054088, 0.9945914). Torchjd's default moved the weights already at
    step 1 ((0.4975, 0.5025) x the raw E there)."""
    model, w = Toy(), make("excess_mtl", excess_mtl_step=0.01)
    w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 2.0]), model))
    torch.testing.assert_close(model.theta.grad, torch.tensor([1.0, 2.0]))
    assert model.a.grad.item() == pytest.approx(1.0) and model.b.grad.item() == pytest.approx(2.0)
    for p in model.parameters():
        p.grad = None
    w.backward(GivenStep(model.losses([2.0, 0.0], [0.0, 2.0]), model))
    expected = torch.tensor([1.0054088, 0.9945914])
    torch.testing.assert_close(torch.tensor(list(w.weights().values())), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.theta.grad, 2 * expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.a.grad, expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.b.grad, 2 * expected[1], rtol=1e-5, atol=1e-6)


def test_nash_mtl_heads_get_the_unclipped_alphas_and_only_the_shared_update_is_clipped():
    """The authors' code (and LibMTL) backpropagates sum_t alpha_t L_t, then clips the shared parameters'
    gradient to norm 1: a head gets alpha_t times its own gradient, alpha unclipped.

    By hand: orthogonal rows of norms 2 and 1, G = diag(4, 1); the bargaining solution G alpha = 1 / alpha
    gives alpha_t = 1 / |g_t| = [0.5, 1] (the solver works on G / |G|_F and scales back). The shared update
    alpha J = [1, 1] (norm 1.414) is clipped to norm 1: [0.7071, 0.7071]. Torchjd's weights fold the clip
    in ([0.354, 0.707]): the heads got those before (a.grad 0.354 where the authors' is 0.5)."""
    alpha = torch.tensor([0.5, 1.0])
    model = Toy()
    make("nash_mtl").backward(GivenStep(model.losses([2.0, 0.0], [0.0, 1.0]), model))
    torch.testing.assert_close(model.a.grad, alpha[0] * 1.0, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(model.b.grad, alpha[1] * 2.0, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.5, 0.5]) ** 0.5, rtol=1e-3, atol=1e-3)
    unclipped = Toy()
    make("nash_mtl", nash_max_norm=0.0).backward(GivenStep(unclipped.losses([2.0, 0.0], [0.0, 1.0]), unclipped))
    torch.testing.assert_close(unclipped.theta.grad, alpha @ torch.tensor([[2.0, 0.0], [0.0, 1.0]]),
                               rtol=1e-3, atol=1e-3)
    own = Toy()
    make("nash_mtl", task_grads="own").backward(GivenStep(own.losses([2.0, 0.0], [0.0, 1.0]), own))
    assert own.a.grad.item() == 1.0 and own.b.grad.item() == 2.0
    with pytest.raises(ConfigError, match="task_grads=weighted needs task weights"):
        make("graddrop", task_grads="weighted")


def test_aligned_mtl_update_is_the_papers_sum_not_the_mean():
    """Algorithm 1's update with the preference vector of ones: T (= 2) times torchjd's default (1/T)."""
    mean = aggregate("aligned_mtl", [1.0, 0.0], [-1.0, 1.0], aligned_mtl_pref="mean")
    total = aggregate("aligned_mtl", [1.0, 0.0], [-1.0, 1.0])
    torch.testing.assert_close(total, 2 * mean)
    with pytest.raises(ConfigError, match="aligned_mtl_pref"):
        make("aligned_mtl", aligned_mtl_pref="median")


def test_graddrop_works_on_the_shared_activations_where_the_tasks_share_one_tensor():
    """The paper drops gradient signs at activations: with one input group under hard sharing GradDrop
    takes the features' Jacobian (auto), with tasks of different inputs the shared parameters'."""
    from lepton_bench.config import ModelConfig
    from lepton_bench.models import TaskIO, build_model

    def io(name, group):
        return TaskIO(name, "text", "tag", 5, vocab_size=20, max_len=8, group=group)

    one = build_model("hard", [io("a", "g"), io("b", "g")], ModelConfig(dim=8, depth=1))
    two = build_model("hard", [io("a", "g1"), io("b", "g2")], ModelConfig(dim=8, depth=1))
    w = make("graddrop")
    assert not w.uses_features
    w.check(one)
    assert w.uses_features          # the old behaviour: the parameters' Jacobian always
    w.check(two)
    assert not w.uses_features
    forced = make("graddrop", graddrop_on="params")
    forced.check(one)
    assert not forced.uses_features
    with pytest.raises(ConfigError, match="graddrop_on"):
        make("graddrop", graddrop_on="both").check(one)


def test_every_weighting_has_its_hard_variant_a_plugins_too():
    """hard-<name> is derived from the weighting registry; a later weighting gets one; an explicit
    variant of that name replaces the derived one."""
    from lepton_bench.methods import Weighting
    from lepton_bench.variants import VARIANTS, Variant, register_variant

    for name in WEIGHTINGS.list():
        v = VARIANTS.get(f"hard-{name}")
        assert (v.architecture, v.weighting) == ("hard", name)

    @WEIGHTINGS.register("test_derived_ew")
    class Derived(Weighting):
        """Derived test weighting: the plain sum."""

        def combine(self, losses):
            return torch.stack(list(losses.values())).sum()

    assert VARIANTS.get("hard-test_derived_ew").weighting == "test_derived_ew"
    assert VARIANTS.help("hard-test_derived_ew") == "hard sharing, Derived test weighting"
    register_variant(Variant("hard-test_derived_ew", "hard", "test_derived_ew", overrides={"model.depth": 2},
                             help="mine"))
    assert VARIANTS.get("hard-test_derived_ew").overrides == {"model.depth": 2}


# by hand elsewhere: db_mtl's task gradients are its log-losses' (tests/test_balancing.py), nash_mtl's and
# excess_mtl's weighted; moco's (official form) rescales each gradient to its loss, 0 on this toy (test_balancing)
@pytest.mark.parametrize("name", [n for n in WEIGHTINGS.list() if getattr(WEIGHTINGS.get(n), "make", None)
                                  and n not in ("pcgrad", "mgda", "db_mtl", "nash_mtl", "excess_mtl", "moco")
                                  and not issubclass(WEIGHTINGS.get(n), TwoBatches)])   # modo, sdmgrad: by hand below
def test_every_aggregator_gives_a_finite_update_and_own_task_gradients(name):
    g = aggregate(name, [1.0, 0.0], [-1.0, 1.0])
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_gradient_methods_refuse_models_without_shared_parameters():
    from lepton_bench.config import ModelConfig
    from lepton_bench.models import TaskIO, build_model

    model = build_model("soft_l2", [TaskIO("a", "text", "class", 2, 10, 8), TaskIO("b", "text", "class", 2, 10, 8)],
                        ModelConfig(dim=16, depth=1, heads=2))
    with pytest.raises(ConfigError, match="shares none"):
        make("pcgrad").check(model)
    with pytest.raises(ConfigError, match="no shared parameters|none"):
        make("gradnorm").check(model)


def test_backward_returns_the_combined_loss_and_aggregators_none():
    """What train_step checks for non-finite values without a host sync: the scalar a loss
    weighting backpropagated; a gradient aggregator combines no loss."""
    model = Toy()
    total = make("static", static={"a": 2.0}).backward(GivenStep(losses(1, 2), model))
    assert total.item() == 4 and not total.requires_grad
    assert make("gls").backward(GivenStep(losses(1.0, 4.0), model)).item() == pytest.approx(2.0)
    assert make("pcgrad").backward(GivenStep(model.losses([1.0, 0.0], [-1.0, 1.0]), model)) is None


def feature_problem():
    """A tiny one-group model: (losses, the shared features z) of one fixed batch, as a function."""
    from lepton_bench.config import ModelConfig
    from lepton_bench.models import TaskIO, build_model

    torch.manual_seed(0)
    ios = [TaskIO("a", "text", "class", 2, 20, 6, group="g"), TaskIO("b", "text", "tag", 3, 20, 6, group="g")]
    model = build_model("hard", ios, ModelConfig(dim=8, depth=1, heads=2, dropout=0.0)).eval()
    batch = {"ids": torch.randint(2, 20, (4, 6)), "lengths": torch.full((4,), 6)}
    ya, yb = torch.tensor([0, 1, 1, 0]), torch.randint(0, 3, (4, 6))

    def losses_and_features():
        kept = {}
        out = model.forward_group(["a", "b"], batch, kept)
        (z,) = kept.values()
        return {"a": nn.functional.cross_entropy(out["a"], ya),
                "b": nn.functional.cross_entropy(out["b"].flatten(0, 1), yb.flatten())}, z

    return model, losses_and_features


def test_aligned_mtl_ub_aligns_the_shared_features_gradients_by_hand():
    """Aligned-MTL-UB (the authors' AlignedMTLUBBalancer; ``tagging-aligned_mtl_ub``): G = F F^T of the
    feature rows, G = V diag(l) V^T; B = sqrt(l_min) V diag(l)^(-1/2) V^T (scale "min"); w = B 1; then one
    backward of sum_t w_t L_t into the shared parameters."""
    model, losses_and_features = feature_problem()
    L, z = losses_and_features()
    F = torch.stack([torch.autograd.grad(L[t], z, retain_graph=True)[0].flatten() for t in "ab"]).double()
    lam, V = torch.linalg.eigh(F @ F.T)
    w = (lam.min().sqrt() * V @ torch.diag(lam.rsqrt()) @ V.T).sum(1).float()
    shared, _ = model.parameter_split()
    expected = torch.autograd.grad(w[0] * L["a"] + w[1] * L["b"], shared)
    m = WEIGHTINGS.get("aligned_mtl")(["a", "b"], resolve_args("aligned_mtl", {"jacobian": "features"}))
    L, z = losses_and_features()
    m.to(torch.device("cpu")).backward(GivenStep(L, model, given_features=z))
    for p, e in zip(shared, expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)


def test_jacobian_on_the_shared_features_is_mgda_ub_by_hand():
    """jacobian=features (MGDA-UB, Sener & Koltun 2018): min-norm weights of the task gradients w.r.t. the
    shared features z, then one backward of sum_t alpha_t L_t into the shared parameters. For two tasks
    the min-norm point has a closed form: alpha = clip((g2 - g1) . g2 / |g1 - g2|^2, 0, 1)."""
    model, losses_and_features = feature_problem()
    L, z = losses_and_features()
    g1, g2 = (torch.autograd.grad(L[t], z, retain_graph=True)[0].flatten() for t in "ab")
    alpha = float(((g2 - g1) @ g2 / (g1 - g2).norm() ** 2).clamp(0, 1))
    shared, _ = model.parameter_split()
    expected = torch.autograd.grad(alpha * L["a"] + (1 - alpha) * L["b"], shared)

    w = WEIGHTINGS.get("mgda")(["a", "b"], resolve_args("mgda", {"jacobian": "features"})).to(torch.device("cpu"))
    assert w.uses_features and w.needs.one_feature_tensor
    L, z = losses_and_features()
    w.backward(GivenStep(L, model, given_features=z))
    for p, e in zip(shared, expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=2e-2, atol=1e-6)   # torchjd's MGDA: Frank-Wolfe, eps 1e-3
    with pytest.raises(ConfigError, match="params or features"):
        WEIGHTINGS.get("mgda")(["a", "b"], resolve_args("mgda", {"jacobian": "inputs"}))


def test_gradnorm_w_is_the_shared_trunks_last_matrix_when_a_group_stem_is_shared_too():
    """Mixing an input group (a and b share a text stem) with an image task: the group's stem is shared
    but the image task never reaches it, so GradNorm's W (Chen et al. 2018: the last shared layer) is the
    trunk's last matrix, on which every task has a gradient."""
    from lepton_bench.config import ModelConfig
    from lepton_bench.methods.gradnorm import last_shared_weight
    from lepton_bench.models import TaskIO, build_model

    ios = [TaskIO("img", "image", "class", 2), TaskIO("a", "text", "class", 2, 20, 6, group="g"),
           TaskIO("b", "text", "tag", 3, 20, 6, group="g")]
    model = build_model("hard", ios, ModelConfig(dim=8, depth=1, heads=2))
    trunk = [p for p in model.trunks["shared"].parameters() if p.ndim == 2]
    assert last_shared_weight(model) is trunk[-1]
    shared = {id(p) for p in model.parameter_split()[0]}
    assert any(id(p) in shared for p in model.stems["g"].parameters())   # the group's stem is shared, yet not W


class Halves(Toy):
    """Toy whose two half-batches have Jacobians J_1 = [[1, 0], [0, 1]] and J_2 = [[1, 0], [0, 2]]."""

    def halves(self):
        return [self.losses([1.0, 0.0], [0.0, 1.0]), self.losses([1.0, 0.0], [0.0, 2.0])]


def test_modo_steps_its_weights_on_two_batches_by_hand():
    """MoDo (eq. 2.9a): lambda_1 = Proj_simplex(lambda_0 - gamma (J_1 J_2^T lambda_0 + rho lambda_0)) with
    lambda_0 = [.5, .5], A = J_1 J_2^T = diag(1, 2), gamma = rho = 0.1: [.5, .5] - .1 [.55, 1.05] =
    [.445, .395], projected (+ .08 each): [.525, .475]. Update (2.9b): lambda^T (J_1 + J_2)/2 =
    [.525, .475 * 1.5]; the task parameters lambda_t times their own gradient (1 and 2 here)."""
    model, w = Halves(), make("modo")
    first, second = model.halves()
    w.backward(GivenStep({t: (a + b) / 2 for (t, a), b in zip(first.items(), second.values(), strict=True)}, model,
                         given_halves=(first, second)))
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.525, 0.7125]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.a.grad, torch.tensor(0.525), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.b.grad, torch.tensor(0.475 * 2), rtol=1e-4, atol=1e-4)
    assert w.weights() == pytest.approx({"a": 0.525, "b": 0.475})
    with pytest.raises(ConfigError, match="halves"):
        w.backward(GivenStep(model.losses([1.0, 0.0], [0.0, 1.0]), model))


def test_sdmgrad_is_torchjds_weighting_on_two_batches():
    import torchjd.aggregation as A

    model, w = Halves(), make("sdmgrad")
    w.backward(GivenStep({}, model, given_halves=tuple(model.halves())))
    lam = A.SDMGradWeighting(lambda_=0.3)(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    torch.testing.assert_close(model.theta.grad, lam @ torch.tensor([[1.0, 0.0], [0.0, 1.5]]), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="jacobian=features is not offered"):
        make("sdmgrad", jacobian="features")


@pytest.mark.parametrize("name", [n for n in WEIGHTINGS.list()   # gradnorm needs a trunk, and a method on
                                  if n != "gradnorm" and not make(n).needs.one_output_kind])   # heads
def test_a_non_finite_loss_reaches_the_gradients_not_a_solvers_error(name):   # (its own test: bayesagg_mtl)
    """Every weighting (plugins too): a NaN loss raises nothing inside the method (no SVD or QP error);
    it reaches the shared gradients (or the combined loss), so the run's check names the task."""
    model, w = Halves(), make(name)
    L = model.losses([1.0, 0.0], [0.0, 2.0])
    L["a"] = L["a"] * float("nan")
    ahead = Lookahead(lambda _: {t: v * float("nan") if t == "a" else v   # fresh losses, as non-finite
                                 for t, v in model.losses([1.0, 0.0], [0.0, 2.0]).items()}, None, None, 0.1, TASKS)
    total = w.backward(GivenStep(L, model, given_halves=(L, model.losses([1.0, 0.0], [0.0, 1.0])),
                                 given_lookahead=ahead, given_features=model.theta.unsqueeze(0)))
    grads = model.theta.grad
    assert (total is not None and not torch.isfinite(total).all()) or not torch.isfinite(grads).all()


# ---------------------------------------------------------------- graddrop (official: features), pcd, cosmos, pbi

def graddrop_example():
    """Batch 2, 2 features, tasks a and b. sign(A) = [[1, -1], [1, 1]]. Summed over the batch,
    G_a = [1 + 1, -2 - 1] = [2, -3], G_b = [-1 + 0.5, -1 - 1] = [-0.5, -2]. Feature 0: P = (1 + 1.5 / 2.5) / 2
    = 0.8: a kept if U_0 < 0.8 (b dropped), else b kept. Feature 1: P = (1 - 5 / 5) / 2 = 0, both negative:
    both kept whatever U_1, column a + b = [3, -2]."""
    A = torch.tensor([[1.0, -1.0], [2.0, 1.0]])
    grads = torch.tensor([[[1.0, 2.0], [1.0, -1.0]], [[-1.0, 1.0], [0.5, -1.0]]])
    return A, grads


@pytest.mark.parametrize(("seed", "column0"), [(0, [1.0, 1.0]), (5, [-1.0, 0.5])])
def test_graddrop_official_drops_whole_features_from_signs_summed_over_the_batch_by_hand(seed, column0):
    """LibMTL's GradDrop / the authors' lingvo layer: one U per feature, the mask over the whole batch.
    torch.rand on a generator seeded 0 draws U_0 = 0.496 (< 0.8: a's column kept), seeded 5 U_0 = 0.830 (b's)."""
    from lepton_bench.methods.graddrop import feature_drop

    A, grads = graddrop_example()
    out = feature_drop(grads, A, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(out, torch.tensor([[column0[0], 3.0], [column0[1], -2.0]]))
    poisoned = grads.clone()
    poisoned[1, 0, 1] = float("nan")   # a non-finite gradient is not dropped: it reaches the update
    assert torch.isnan(feature_drop(poisoned, A, torch.Generator().manual_seed(seed))).any()


def test_graddrop_official_form_is_the_default_and_the_elementwise_one_an_option():
    assert make("graddrop").args.graddrop_form == "official"
    assert make("graddrop", graddrop_form="elementwise").args.graddrop_form == "elementwise"
    with pytest.raises(ConfigError, match="graddrop_form"):
        make("graddrop", graddrop_form="batch")


def test_pcd_projects_the_primary_gradient_onto_the_secondarys_progress_constraint_by_hand():
    """PCD, first step: the debiased moving average of |g_t|^2 is |g_t|^2, so g~_t = g_t / |g_t| (eps 1e-8
    aside). g_a = [2, 0] (primary), g_b = [-1, 1]: g~_b . g~_a = -1/sqrt(2) < tau = 0.02, the constraint
    g~_b . d >= tau is active: d = g~_a + mu g~_b with mu = tau + 1/sqrt(2); d = [1 - mu/sqrt(2), mu/sqrt(2)],
    rescaled to |g_a| = 2. Agreeing g_b = [1, 1]: the constraint holds at d = g~_a, the update is g_a."""
    mu = 0.02 + 1 / math.sqrt(2)
    d = torch.tensor([1 - mu / math.sqrt(2), mu / math.sqrt(2)])
    torch.testing.assert_close(aggregate("pcd", [2.0, 0.0], [-1.0, 1.0]), 2 * d / d.norm(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(aggregate("pcd", [2.0, 0.0], [1.0, 1.0]), torch.tensor([2.0, 0.0]),
                               rtol=1e-5, atol=1e-6)


def test_pcd_takes_the_runs_main_task_or_the_named_one_as_primary():
    """With b primary the same problem with the roles swapped: g_b = [2, 0], g_a = [-1, 1]."""
    mu = 0.02 + 1 / math.sqrt(2)
    d = torch.tensor([1 - mu / math.sqrt(2), mu / math.sqrt(2)])
    expected = 2 * d / d.norm()
    torch.testing.assert_close(aggregate("pcd", [-1.0, 1.0], [2.0, 0.0], pcd_primary="b"), expected,
                               rtol=1e-5, atol=1e-6)
    model, w = Toy(), make("pcd")
    w.main = ["b"]   # as setup.prepare sets it when a is auxiliary
    w.backward(GivenStep(model.losses([-1.0, 1.0], [2.0, 0.0]), model))
    torch.testing.assert_close(model.theta.grad, expected, rtol=1e-5, atol=1e-6)
    assert w.primary == "b" and make("pcd").primary == "a"
    with pytest.raises(ConfigError, match="pcd_primary=z is not a task"):
        make("pcd", pcd_primary="z")


def test_cosmos_at_a_fixed_ray_is_the_linear_sum_minus_lambda_cosine_by_hand():
    """r = (1/2, 1/2), lambda 2, L = (1, 3): r.L = 2, |r| |L| = sqrt(1/2) sqrt(10) = sqrt(5); total =
    2 - 2 * 2 / sqrt(5). d total / d L_i = r_i - lambda (r_i / sqrt(5) - r.L L_i / (sqrt(5) |L|^2)):
    a: 0.5 - 2 (0.5 - 0.2) / sqrt(5), b: 0.5 - 2 (0.5 - 0.6) / sqrt(5)."""
    w = make("cosmos", cosmos_alpha=0.0)
    total = w.combine(losses(1, 3))
    assert total.item() == pytest.approx(2 - 4 / math.sqrt(5), rel=1e-6)
    assert w.weights() == pytest.approx({"a": 0.5 - 0.6 / math.sqrt(5), "b": 0.5 + 0.2 / math.sqrt(5)}, rel=1e-6)
    skewed = make("cosmos", cosmos_alpha=0.0, cosmos_lambda=0.0, cosmos_preference={"a": 3.0})
    assert skewed.combine(losses(1, 3)).item() == pytest.approx(0.75 * 1 + 0.25 * 3)   # lambda 0: linear


def test_cosmos_draws_a_seeded_dirichlet_ray_every_step():
    def rays(seed):
        w = WEIGHTINGS.get("cosmos")(TASKS, resolve_args("cosmos", {}), seed=seed).to(torch.device("cpu"))
        return torch.stack([w.draw() for _ in range(3)])

    r = rays(0)
    torch.testing.assert_close(r.sum(1), torch.ones(3))
    assert (r > 0).all() and not torch.allclose(r[0], r[1])
    torch.testing.assert_close(rays(0), r)                 # the run's seed fixes them
    assert not torch.allclose(rays(1), r)


def test_pbi_is_the_projection_plus_theta_times_the_distance_to_the_preference_line_by_hand():
    """w = (1, 1)/sqrt(2), L = (1, 3): d1 = 4/sqrt(2), the perpendicular part L - d1 w = (-1, 1), d2 = sqrt(2):
    total = 2 sqrt(2) + 5 sqrt(2) = 7 sqrt(2); d total / dL = w + theta (-1, 1)/sqrt(2) = (-4, 6)/sqrt(2)."""
    w = make("pbi")
    assert w.combine(losses(1, 3)).item() == pytest.approx(7 * math.sqrt(2), rel=1e-6)
    assert w.weights() == pytest.approx({"a": -4 / math.sqrt(2), "b": 6 / math.sqrt(2)}, rel=1e-6)
    with pytest.raises(ConfigError, match="pbi_theta"):
        make("pbi", pbi_theta=-1.0)


def test_ldc_mtl_weighs_rescaled_losses_and_penalises_their_discrepancy_by_hand():
    """A zero router gives softmax = (1/2, 1/2), inside the clamp [0.2, 0.8]. Step 1, L = (1, 4): r = L / min L
    = (1, 4), l = (1, 1), w l = (1/2, 1/2): total = 1 + 0.05 * 0. Step 2, L = (2, 4): l = (2, 1), w l = (1, 1/2):
    total = 1.5 / 1 + 0.05 * 0.5 = 1.525; d total / d L_a = (w_a / sum w + lambda w_a) / r_a = 0.525,
    d total / d L_b = (w_b / sum w - lambda w_b) / r_b = 0.475 / 4."""
    model, w = Toy(), make("ldc_mtl")
    model.feature_dim = 3
    w.check(model)
    with torch.no_grad():
        for p in w.parameters():
            p.zero_()
    z = torch.randn(4, 3)
    assert w.backward(GivenStep(losses(1, 4), model, given_features=z)).item() == pytest.approx(1.0)
    L = losses(2, 4)
    assert w.backward(GivenStep(L, model, given_features=z)).item() == pytest.approx(1.525)
    assert L["a"].grad.item() == pytest.approx(0.525) and L["b"].grad.item() == pytest.approx(0.475 / 4)
    assert w.weights() == {"a": 0.5, "b": 0.5}
    router = w.parameters()[0]
    assert router.grad is not None and router.grad.abs().sum() > 0   # the router learns from the same loss


def test_ldc_mtl_clamps_the_routers_weights_and_can_leave_the_losses_unscaled():
    model, w = Toy(), make("ldc_mtl", ldc_rescale=False)
    w.check(model)
    with torch.no_grad():
        w.router.weight.zero_()
        w.router.bias.copy_(torch.tensor([10.0, 0.0]))   # softmax ~ (1, 0): clamped to (0.8, 0.2)
    total = w.backward(GivenStep(losses(1, 4), model, given_features=torch.zeros(2, 2)))
    assert w.weights() == pytest.approx({"a": 0.8, "b": 0.2})
    assert total.item() == pytest.approx((0.8 * 1 + 0.2 * 4) / 1.0 + 0.05 * abs(0.8 - 0.8))
    with pytest.raises(ConfigError, match="ldc_min <= ldc_max"):
        make("ldc_mtl", ldc_min=0.9, ldc_max=0.1)
