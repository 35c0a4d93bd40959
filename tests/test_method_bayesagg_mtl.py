"""BayesAgg-MTL (``methods/bayesagg_mtl.py``) against numbers worked by hand from the authors' code
(ssi-research/BayesAgg_MTL, ``BayesAgg_MTL/BayesAggMTL.py``: ``LastLayerPosteriorTaylorApprox``,
``ApproxMomentsMultiClass``, ``GaussianAgg``), its wiring into a step, its refusals, and one short real run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lepton_bench.methods.bayesagg_mtl  # noqa: F401  (registers the method)
from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, GivenStep, resolve_args
from lepton_bench.methods.bayesagg_mtl import aggregate, ggn, moments_of, posterior, with_bias
from lepton_bench.models.heads import ClassificationHead, TaggingHead
from lepton_bench.tasks import IGNORE

TASKS = ["a", "b"]


def make(tasks=TASKS, **cfg):
    return WEIGHTINGS.get("bayesagg_mtl")(tasks, resolve_args("bayesagg_mtl", cfg), seed=0).to(torch.device("cpu"))


def test_laplace_posterior_by_hand_full_data_then_batch():
    """D = 1, C = 2, one example h = 1 of class 0, W = 0 ([weights | bias], 2 x 2), gamma = 1.

    Their ``posterior``: logits 0, p = (1/2, 1/2); the summed cross-entropy's gradient g = (p - onehot) ht^T with
    ht = (1, 1): g = (-1/2, -1/2, 1/2, 1/2) = -v/2, v = (1, 1, -1, -1). The GGN: (diag p - p p^T) (x) ht ht^T =
    [[1/4, -1/4], [-1/4, 1/4]] (x) [[1, 1], [1, 1]] = v v^T / 4.
    Full data, prior N(0, I): Lambda = I + v v^T / 4; a = g + I (W - 0) = -v/2; |v|^2 = 4, so
    Lambda^-1 = I - v v^T / 8 and Lambda^-1 a = -v/2 + v/4 = -v/4: mean = W - Lambda^-1 a = v/4.
    Batch (the same example), with that posterior as prior: Lambda_b = v v^T / 4 + Lambda = I + v v^T / 2;
    a = g + Lambda (W - v/4) = -v/2 - v/4 - v/4 = -v; Lambda_b^-1 = I - v v^T / 6, Lambda_b^-1 a = -v + 2v/3
    = -v/3: mean = v/3."""
    h, y, W = torch.ones(1, 1), torch.tensor([0]), torch.zeros(2, 2)
    v = torch.tensor([1.0, 1.0, -1.0, -1.0])
    torch.testing.assert_close(ggn(torch.tensor([[0.5, 0.5]]), with_bias(h)), torch.outer(v, v) / 4)
    mean, precision, chol = posterior(h, y, W, torch.zeros(4), torch.eye(4))
    torch.testing.assert_close(mean, v / 4)
    torch.testing.assert_close(precision, torch.eye(4) + torch.outer(v, v) / 4)
    torch.testing.assert_close(chol @ chol.T, precision)
    mean_b, precision_b, _ = posterior(h, y, W, mean, precision)
    torch.testing.assert_close(mean_b, v / 3)
    torch.testing.assert_close(precision_b, torch.eye(4) + torch.outer(v, v) / 2)


def test_ggn_flattens_weights_and_bias_row_by_row():
    """Their J^T H J with J_i = I_C (x) ht_i ([C, C (D + 1)], parameters of class c at c (D + 1) ... ), per row."""
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(5, 3), -1)
    ht = with_bias(torch.randn(5, 2))
    J = torch.einsum("kp,kij->kijp", ht, torch.eye(3).expand(5, 3, 3)).reshape(5, 3, 9)
    H = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    torch.testing.assert_close(ggn(p, ht), torch.einsum("mcp,mck,mkq->pq", J, H, J))


def test_gradient_moments_of_two_draws_by_hand():
    """D = 1, C = 2, h = 1, y = 0. Draw 1: w = (1, 0), b = 0: p = (e, 1) / (e + 1), the gradient w.r.t. h
    w^T (p - onehot) = 1 (e / (e + 1) - 1) + 0 = -1 / (e + 1). Draw 2: w = 0: 0. Sums: -1 / (e + 1) and
    1 / (e + 1)^2; their mean -1 / (2 (e + 1)), variance 1 / (2 (e + 1)^2) - 1 / (4 (e + 1)^2) = 1 / (4 (e + 1)^2)."""
    e = math.e
    w = torch.tensor([[[1.0], [0.0]], [[0.0], [0.0]]])
    s1, s2 = moments_of(torch.ones(1, 1), torch.tensor([0]), w, torch.zeros(2, 2))
    assert s1.item() == pytest.approx(-1 / (e + 1))
    assert s2.item() == pytest.approx(1 / (e + 1) ** 2)
    m = make(bayesagg_samples=4, bayesagg_power=1.0)
    # a posterior of precision 1e12 I: every draw is its mean, so mu is draw 1's gradient and the variance the floor
    mean = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    mu, var = m._moments(torch.ones(1, 1, dtype=torch.float64), torch.tensor([0]), mean,
                         1e6 * torch.eye(4, dtype=torch.float64), 2)
    assert mu.item() == pytest.approx(-1 / (e + 1), rel=1e-5)
    assert var.item() == pytest.approx(1e-8)   # max(E[g^2] - mu^2, 1e-8) ^ 1


def test_draws_have_the_posterior_covariance():
    """mean + L^-T eps with Lambda = L L^T has covariance Lambda^-1 (theirs: the Cholesky factor of Lambda^-1)."""
    m = make()
    precision = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    x = m.draw(torch.tensor([1.0, -1.0]), torch.linalg.cholesky(precision), 200_000)
    torch.testing.assert_close(x.mean(0), torch.tensor([1.0, -1.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(x.T.cov(), torch.linalg.inv(precision), atol=0.01, rtol=0)


def test_precision_weighted_aggregation_by_hand():
    """Their ``GaussianAgg``: per dimension sum_t (mu_t / var_t) / sum_t (1 / var_t), divided by the rows.
    Row 1, dimension 1: mu = (1, 3), var = (1, 3): (1 + 1) / (1 + 1/3) = 3/2; dimension 2: mu = (2, -2), var = (4, 4):
    0. Row 2: task b has no label there, so a's mu = 5 alone; row 3: no task: 0. Three rows: / 3."""
    mu = torch.tensor([[[1.0, 2.0], [3.0, -2.0]], [[5.0, 5.0], [9.0, 9.0]], [[1.0, 1.0], [1.0, 1.0]]])
    var = torch.tensor([[[1.0, 4.0], [3.0, 4.0]], [[2.0, 2.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    valid = torch.tensor([[True, True], [True, False], [False, False]])
    update, share = aggregate(mu, var, valid, 3)
    torch.testing.assert_close(update, torch.tensor([[1.5, 0.0], [5.0, 5.0], [0.0, 0.0]]) / 3)
    torch.testing.assert_close(share[0], torch.tensor([[0.75, 0.5], [0.25, 0.5]]))


class Toy(nn.Module):
    """A shared linear trunk (3 -> 4 per token) and one head per task (tagging: per token; classification: pooled)."""

    def __init__(self, head, classes=(3, 2)):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(3, 4)
        self.heads = nn.ModuleDict({t: head(4, c) for t, c in zip(TASKS, classes, strict=True)})

    def parameter_split(self):
        return list(self.trunk.parameters()), {t: list(h.parameters()) for t, h in self.heads.items()}


class ForwardStep:
    """A step whose forward pass runs when its losses are first asked for (as the run's), with its labels."""

    def __init__(self, model, x, mask, labels, smoothing=0.0):
        self.model, self.x, self.mask, self.labels, self.smoothing = model, x, mask, labels, smoothing
        self._losses = None

    def losses(self):
        if self._losses is None:
            self.z = self.model.trunk(self.x)
            self._losses = {}
            for t, y in self.labels.items():
                logits = self.model.heads[t](self.z, self.mask)
                if logits.dim() == 3:
                    logits, y = logits.flatten(0, 1), y.flatten()
                self._losses[t] = F.cross_entropy(logits, y, ignore_index=IGNORE, label_smoothing=self.smoothing)
        return self._losses

    def extra(self):
        return None

    def features(self):
        self.losses()
        return self.z

    def targets(self):
        return self.labels


def batch(head, seed):
    g = torch.Generator().manual_seed(seed)
    x, mask = torch.randn(4, 5, 3, generator=g), torch.ones(4, 5, dtype=torch.bool)
    mask[0, 3:] = False
    if head is TaggingHead:
        ya, yb = torch.randint(0, 3, (4, 5), generator=g), torch.randint(0, 2, (4, 5), generator=g)
        ya[~mask], yb[~mask] = IGNORE, IGNORE
        yb[1, 0] = IGNORE   # a position only task a labels
    else:
        ya, yb = torch.randint(0, 3, (4,), generator=g), torch.randint(0, 2, (4,), generator=g)
    return x, mask, {"a": ya, "b": yb}


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head", [TaggingHead, ClassificationHead])
def test_a_step_warms_up_on_the_sum_then_aggregates_on_the_representation(head):
    """Steps 0 and 1 (warm-up 2, window 2): the plain sum's gradients, and the window's rows are kept. Step 2:
    the prior is the posterior of steps 0-1's rows at the current W; the heads get their own loss's gradient;
    the trunk gets the backprop of the aggregate from the representation the heads read (tokens; or the pooled
    vector, through the pooling), replayed here from the pieces above with the same draws."""
    model, m = Toy(head), make(bayesagg_window=2, bayesagg_warmup=2, bayesagg_samples=16)
    for s in range(2):
        x, mask, Y = batch(head, s)
        model.zero_grad()
        m.backward(ForwardStep(model, x, mask, Y))
        got = grads(model)
        model.zero_grad()
        sum(ForwardStep(model, x, mask, Y).losses().values()).backward()
        for n, g in grads(model).items():
            torch.testing.assert_close(got[n], g)
    rows, labels = m._last   # the positions some task labels (tagging: 18 of 20 a batch) of steps 0 and 1
    assert rows.shape == ((36 if head is TaggingHead else 8), 4) and labels.shape == (len(rows), 2)

    x, mask, Y = batch(head, 2)
    state = m.gen.get_state()
    model.zero_grad()
    step = ForwardStep(model, x, mask, Y)
    assert m.backward(step) is None
    got = grads(model)

    # the heads: their own loss's gradient
    model.zero_grad()
    L = ForwardStep(model, x, mask, Y).losses()
    sum(L.values()).backward()
    for n, g in grads(model).items():
        if n.startswith("heads."):
            torch.testing.assert_close(got[n], g)

    # the trunk: replay the aggregate
    replay = make(bayesagg_window=2, bayesagg_warmup=2, bayesagg_samples=16)
    replay.gen.set_state(state)
    z = model.trunk(x)
    if head is TaggingHead:
        r = z
    else:
        m_ = mask.unsqueeze(-1).float()
        r = (z * m_).sum(1) / m_.sum(1)
    flat = r.detach().reshape(-1, 4)
    lab = torch.stack([Y[t].reshape(-1) for t in TASKS], 1)
    keep = (lab != IGNORE).any(1)
    flat, lab = flat[keep], lab[keep]
    mu, var = torch.zeros(len(flat), 2, 4), torch.ones(len(flat), 2, 4)
    for i, t in enumerate(TASKS):
        fc = model.heads[t].fc
        W = torch.cat([fc.weight, fc.bias[:, None]], 1).detach()
        at_full = m._last[1][:, i] != IGNORE
        P = W.numel()
        m0, lam0, _ = posterior(m._last[0][at_full], m._last[1][at_full, i], W, torch.zeros(P), torch.eye(P) / 0.005)
        torch.testing.assert_close(m._prior[i][0], m0)
        at = lab[:, i] != IGNORE
        mean, _, chol = posterior(flat[at], lab[at, i], W, m0, lam0)
        mu[at, i], var[at, i] = replay._moments(flat[at], lab[at, i], mean, chol, W.shape[0])
    update, _ = aggregate(mu, var, lab != IGNORE, len(flat))
    full = torch.zeros(keep.numel(), 4)
    full[keep] = update
    model.zero_grad()
    r.backward(full.view(r.shape))
    for n, g in grads(model).items():
        if n.startswith("trunk."):
            torch.testing.assert_close(got[n], g)
    w = m.weights()
    assert sum(w.values()) == pytest.approx(2.0) and set(w) == set(TASKS)


def test_the_full_data_prior_is_refreshed_at_each_window_from_the_window_before():
    """Window 2, warm-up 2 (their epochs): the prior is made at step 2 from steps 0-1's rows, kept at step 3, and
    made again at step 4 from steps 2-3's rows (their j == 0 of every epoch, from the epoch before)."""
    model, m = Toy(TaggingHead), make(bayesagg_window=2, bayesagg_warmup=2, bayesagg_samples=4)
    priors, windows = [], []
    for s in range(5):
        x, mask, Y = batch(TaggingHead, s)
        windows.append(m._last)
        m.backward(ForwardStep(model, x, mask, Y))
        priors.append(m._prior)
    assert priors[0] is None and priors[1] is None
    assert priors[3] is priors[2] and priors[4] is not priors[3]
    assert windows[2] is not windows[4] and windows[3] is windows[2] and windows[4] is not None
    fc = model.heads["a"].fc
    W = torch.cat([fc.weight, fc.bias[:, None]], 1).detach()
    rows, labels = windows[4]
    at = labels[:, 0] != IGNORE
    mean, _, _ = posterior(rows[at], labels[at, 0], W, torch.zeros(W.numel()), torch.eye(W.numel()) / 0.005)
    torch.testing.assert_close(priors[4][0][0], mean, rtol=1e-4, atol=1e-6)


def test_a_non_finite_loss_reaches_the_gradients_not_the_solver():
    """A NaN input makes a NaN loss: no Cholesky error, the gradients are NaN, so the run's check names the task."""
    model, m = Toy(TaggingHead), make(bayesagg_window=1, bayesagg_warmup=1, bayesagg_samples=4)
    x, mask, Y = batch(TaggingHead, 0)
    m.backward(ForwardStep(model, x, mask, Y))
    x[1, 1, 0] = float("nan")
    model.zero_grad()
    m.backward(ForwardStep(model, x, mask, Y))
    assert not torch.isfinite(model.trunk.weight.grad).all()


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="bayesagg_gamma"):
        make(bayesagg_gamma=0.0)
    with pytest.raises(ConfigError, match="bayesagg_power"):
        make(bayesagg_power=-1.0)
    with pytest.raises(ConfigError, match="bayesagg_samples"):
        make(bayesagg_samples=1)
    with pytest.raises(ConfigError, match="bayesagg_warmup >= it"):
        make(bayesagg_window=10, bayesagg_warmup=5)
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve_args("bayesagg_mtl", {"gamma": 1.0})


def test_what_it_cannot_work_on_is_refused():
    x, mask, Y = batch(TaggingHead, 0)
    model = Toy(TaggingHead)
    with pytest.raises(ConfigError, match="Step.targets"):   # a step without the labels
        step = ForwardStep(model, x, mask, Y)
        step.targets = None
        make().backward(step)
    with pytest.raises(ConfigError, match="computed before it asked"):   # losses given up front: no forward to read
        make().backward(GivenStep(ForwardStep(model, x, mask, Y).losses(), model))
    with pytest.raises(ConfigError, match="label smoothing"):   # not the plain cross-entropy of the official code
        make().backward(ForwardStep(model, x, mask, Y, smoothing=0.1))
    mixed = Toy(TaggingHead)
    mixed.heads["b"] = ClassificationHead(4, 2)
    with pytest.raises(ConfigError, match="one output type"):
        make().check(mixed)
    with pytest.raises(ConfigError, match="no head per task"):
        make().check(nn.Linear(2, 2))


def test_a_short_real_run_finishes(data_dir):
    """A real run of NER + POS (one input group, tagging heads), the step's labels from the run's step:
    it trains with finite losses, the last steps aggregated."""
    from .conftest import short_real_run

    points = short_real_run("hard-bayesagg_mtl", data_dir, "weighting_args.bayesagg_window=1",
                            "weighting_args.bayesagg_warmup=1", "weighting_args.bayesagg_samples=64")
    assert points[-1]["weights"] != {"conll2003": 1.0, "conll2003_pos": 1.0}   # the aggregate's precision shares
