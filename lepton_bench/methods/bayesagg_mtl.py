"""BayesAgg-MTL (Achituve et al., ICML 2024): a Bayesian posterior over each task's last layer, and the
shared representation's gradient aggregated by the precision of every task's gradient in every dimension."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, TrainingError
from ..models.heads import ClassificationHead, TaggingHead
from ..tasks import IGNORE
from .base import WEIGHTINGS, Needs, Weighting
from .gradient import add_extra_grads

CHUNK = 1 << 25   # floats per intermediate (the GGN's rows, the Monte-Carlo draws): bounds the method's memory
NO_TARGETS = ("bayesagg_mtl fits its posterior over each task's last layer to the step's labels and takes the gradient "
              "moments at them (the official code passes them in); this step gives none (Step.targets(): each "
              "task's label ids as its loss reads them, IGNORE where a position has none)")


@dataclass
class BayesAggArgs:
    bayesagg_gamma: float = 0.005    # the prior N(0, gamma I) of the last layer's weights and bias (UTKFace's --gamma,
                                     # the official experiment with multi-class tasks; CIFAR-MTL 5e-4)
    bayesagg_power: float = 0.1      # the gradient variances' power before inverting them (UTKFace's
                                     # --sqrt-power-cls; CIFAR-MTL and ChestX-ray14: 5e-4)
    bayesagg_samples: int = 1024     # Monte-Carlo draws of the last layer a step (--num-mc-samples: their
                                     # common default)
    bayesagg_window: int = 200       # steps per "epoch": the last complete window's features and labels make the
                                     # full-data posterior, the prior of every batch's; refreshed at each window's start
    bayesagg_warmup: int = 200       # steps of the plain sum of losses first (their --ls-epochs: UTKFace 10 of 100
                                     # epochs, CIFAR-MTL 3 of 50, ChestX-ray14 1 of 100); at least one window


def cholesky(A: torch.Tensor) -> torch.Tensor:
    """The Cholesky factor of the symmetric A, with a growing jitter on the diagonal when A is not numerically
    positive definite (1e-7 x 10^i in fp32, 1e-9 x 10^i in fp64, 25 tries: the authors' ``psd_safe_cholesky``, after
    gpytorch's). One host sync (the factorisation's status)."""
    L, info = torch.linalg.cholesky_ex(A)
    if not info.any():
        return L
    base = 1e-7 if A.dtype == torch.float32 else 1e-9
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    for i in range(25):
        jitter = base * 10 ** i
        warnings.warn(f"bayesagg_mtl: the posterior precision is not positive definite; added {jitter:.1e} to its "
                      f"diagonal", stacklevel=2)
        L, info = torch.linalg.cholesky_ex(A + jitter * eye)
        if not info.any():
            return L
    raise TrainingError(f"bayesagg_mtl: the posterior precision is not positive definite even with {jitter:.1e} on "
                        f"its diagonal")


def finite(x: torch.Tensor) -> torch.Tensor:
    """x with its non-finite entries 0: a non-finite loss reaches the update through the losses (the run's check
    names its task), not through a Cholesky factorisation that would fail first."""
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def with_bias(h: torch.Tensor) -> torch.Tensor:
    """[n, D] -> [n, D + 1]: the feature 1 of the bias, last (the authors' convention)."""
    return torch.cat([h, h.new_ones(len(h), 1)], dim=1)


def ggn(p: torch.Tensor, ht: torch.Tensor) -> torch.Tensor:
    """The Gauss-Newton matrix of the summed cross-entropy w.r.t. the last layer's parameters, flattened as the
    [C, D + 1] matrix (weights | bias) row by row: sum_i (diag(p_i) - p_i p_i^T) (x) ht_i ht_i^T, for the softmax
    outputs p [n, C] and the features with their bias feature ht [n, D + 1]. The authors' J^T H J with
    J = I_C (x) ht_i, as one product of the [n, C^2] and [n, (D + 1)^2] factors over the rows (the same sum)."""
    n, C = p.shape
    D1 = ht.shape[1]
    out = p.new_zeros(C * C, D1 * D1)
    rows = max(1, CHUNK // (C * C + D1 * D1))
    for i in range(0, n, rows):
        pc, hc = p[i:i + rows], ht[i:i + rows]
        h_out = torch.diag_embed(pc) - pc[:, :, None] * pc[:, None, :]
        out += h_out.reshape(len(pc), C * C).T @ (hc[:, :, None] * hc[:, None, :]).reshape(len(pc), D1 * D1)
    return out.view(C, C, D1, D1).permute(0, 2, 1, 3).reshape(C * D1, C * D1)


def posterior(h: torch.Tensor, y: torch.Tensor, W: torch.Tensor, prior_mean: torch.Tensor,
              prior_precision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The authors' Laplace (second-order Taylor) posterior over the last layer W = [weights | bias] ([C, D + 1]),
    expanded at the current W, for features h [n, D] and labels y [n]: with the summed cross-entropy's gradient g
    and Gauss-Newton matrix G at W, precision Lambda = G + Lambda_0 and mean W - Lambda^{-1} (g + Lambda_0 (W - m_0)).
    Returns (mean [C (D + 1)], precision, its Cholesky factor)."""
    C = W.shape[0]
    ht = with_bias(h)
    p = torch.softmax(ht @ W.T, dim=-1)
    g = ((p - F.one_hot(y, C).to(p.dtype)).T @ ht).flatten()
    precision = ggn(p, ht) + prior_precision
    chol = cholesky(precision)
    a = g + prior_precision @ (W.flatten() - prior_mean)
    return W.flatten() - torch.cholesky_solve(a[:, None], chol).squeeze(1), precision, chol


def moments_of(h: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over draws of the gradient of each row's cross-entropy w.r.t. its features, and of its square:
    for draws w [S, C, D], b [S, C], g_s = w_s^T (softmax(w_s h + b_s) - onehot(y)) ([n, D] each)."""
    r = torch.softmax(torch.einsum("nd,scd->snc", h, weights) + biases[:, None, :], dim=-1)
    g = torch.einsum("snc,scd->snd", r - F.one_hot(y, weights.shape[1]).to(r.dtype), weights)
    return g.sum(0), (g * g).sum(0)


def aggregate(mu: torch.Tensor, var: torch.Tensor, valid: torch.Tensor, count: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' Gaussian aggregation: per row and dimension, sum_t Lambda_t mu_t / sum_t Lambda_t with
    Lambda_t = 1 / var_t, divided by the number of rows; mu, var [n, T, D], a task counted only at the rows it
    labels (``valid`` [n, T]; none: 0). Returns (the gradient [n, D], each task's precision share [n, T, D])."""
    lam = torch.where(valid[..., None], 1 / var, torch.zeros_like(var))
    den = lam.sum(1)
    share = lam / den.clamp_min(torch.finfo(den.dtype).tiny)[:, None]
    return (share * mu).sum(1) / count, share


@WEIGHTINGS.register("bayesagg_mtl")
class BayesAggMTL(Weighting):
    """BayesAgg-MTL (Achituve et al., ICML 2024): precision-weighted task gradients on the shared representation.

    Paper: "Bayesian Uncertainty for Gradient Aggregation in Multi-Task Learning" (arXiv 2402.04005). As the
    authors' code (ssi-research/BayesAgg_MTL, ``BayesAgg_MTL/BayesAggMTL.py``: ``BayesAggMTL.backward`` with
    ``LastLayerPosteriorTaylorApprox`` and ``ApproxMomentsMultiClass``, the multi-class form, and the loop of
    ``experiments/utkface/trainer.py``, their experiment with multi-class tasks), each step, for every task t
    with last layer W_t = [weights | bias] reading the representation h (the features the heads read: every
    token under tagging heads, the pooled vector under classification heads):

    1. the full-data posterior: at the start of every window (``bayesagg_window`` steps, their epoch), the
       Laplace posterior at the current W_t from the prior N(0, gamma I) and the features and labels the steps of
       the last complete window saw (theirs: the previous epoch's, gathered online);
    2. the batch posterior: the Laplace posterior at W_t from this step's rows, with the full-data posterior as
       its prior (mean and precision; ``posterior``);
    3. the moments of the task's gradient w.r.t. each row of h: ``bayesagg_samples`` draws of W_t from it,
       mu_t = E[g], sigma2_t = max(E[g^2] - mu_t^2, 1e-8)^power, per dimension;
    4. h gets sum_t Lambda_t mu_t / sum_t Lambda_t / (rows), Lambda_t = 1 / sigma2_t, backpropagated once into
       the shared parameters; each head gets its own loss's gradient (their ``backward_last_layer``).

    The first ``bayesagg_warmup`` steps train on the plain sum of losses (their linear-scalarisation epochs,
    which also gather the first window). Defaults: their UTKFace run (gamma 0.005, power 0.1, 1024 draws); the
    window and warm-up are steps here (their epochs: 200 steps is about one CoNLL-2003 epoch at 64 sentences).

    Where this differs: draws are mean + L^-T eps with L the precision's Cholesky factor (the same Gaussian; theirs
    factor the inverted precision again); the GGN is one product over rows (the same sum); the draws' gradients
    are summed over classes without the [draws, rows, classes, dims] tensor (the same numbers); under tagging
    heads the rows are the tokens, a task counted only at the positions it labels (their tasks label every
    example) and the aggregate divided by the positions any task labels (theirs: the batch size); the
    precision of the full-data posterior is kept, not recomputed from its covariance's factor; the draws come
    from the method's own generator (seeded by the run's seed); non-finite features or weights are 0 to the
    posterior (the non-finite loss still reaches the gradients, so the run's check names the task). The heads'
    inputs and logits are read by forward hooks on each head's ``fc`` while the step's forward runs; at the
    first step the losses are checked to be the plain cross-entropies of those logits with the labels (label
    smoothing would make the moments those of another loss). Their trainer's gradient clipping (heads 10, shared
    5 for UTKFace) is the run's ``train.clip_norm`` here. Per step: a Cholesky factorisation of a
    C(D+1)-square matrix per task and a host sync each (theirs too); per window, a GGN over the window's rows.

    It reads each task's labels from the step (``Step.targets()``); a step without them is refused."""

    Args = BayesAggArgs
    needs = Needs(every_task=True, single_process=True,   # its posteriors are fitted to this process's rows
                  one_feature_tensor=True,                # one representation that every head reads,
                  one_output_kind=True)                   # with the same rows: tasks of one output type

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        a = self.args
        if not a.bayesagg_gamma > 0:
            raise ConfigError(f"weighting_args.bayesagg_gamma (the prior's variance) must be positive, not "
                              f"{a.bayesagg_gamma}")
        if a.bayesagg_power < 0:
            raise ConfigError(f"weighting_args.bayesagg_power must be >= 0, not {a.bayesagg_power}")
        if a.bayesagg_samples < 2:
            raise ConfigError(f"weighting_args.bayesagg_samples must be at least 2 (a variance), not "
                              f"{a.bayesagg_samples}")
        if a.bayesagg_window < 1 or a.bayesagg_warmup < a.bayesagg_window:
            raise ConfigError(f"weighting_args.bayesagg_window must be >= 1 and bayesagg_warmup >= it (the first "
                              f"full-data prior needs a complete window of features, as theirs an epoch), not "
                              f"{a.bayesagg_window} and {a.bayesagg_warmup}")
        self.k = 0                   # steps seen
        self._open: list[tuple[torch.Tensor, torch.Tensor]] = []   # this window's (rows [n, D], labels [n, T])
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None   # the last complete window's
        self._prior: list[tuple[torch.Tensor, torch.Tensor]] | None = None   # per task: (mean, precision)
        self._share: torch.Tensor | None = None
        self._hooked: nn.Module | None = None
        self._handles: list = []
        self._armed = False
        self._seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def to(self, device):
        super().to(device)
        self.gen = torch.Generator(device=device).manual_seed(self.seed)
        return self

    def check(self, model):
        heads = getattr(model, "heads", None)
        if not isinstance(heads, nn.ModuleDict) or any(t not in heads for t in self.tasks):
            raise ConfigError("bayesagg_mtl places its posterior on each task's last layer: this model has no head "
                              "per task (model.heads)")
        kinds = {type(heads[t]) for t in self.tasks}
        if not all(isinstance(getattr(heads[t], "fc", None), nn.Linear) and isinstance(heads[t], (ClassificationHead,
                   TaggingHead)) for t in self.tasks):
            raise ConfigError("bayesagg_mtl needs every task's last layer to be a linear map of the features it "
                              "reads (the classification and tagging heads' fc)")
        if len(kinds) > 1:
            raise ConfigError("bayesagg_mtl aggregates the tasks' gradients w.r.t. one representation every last layer "
                              "reads; here classification heads read the pooled features and tagging heads each "
                              f"token's ({', '.join(self.tasks)}): train tasks of one output type")
        if not model.parameter_split()[0]:
            raise ConfigError("bayesagg_mtl aggregates the gradient of a shared representation; this architecture "
                              "shares none")

    def _hook(self, model: nn.Module) -> None:
        """Record each head's last-layer input and logits during the step's forward pass (when armed)."""
        for handle in self._handles:
            handle.remove()
        self.check(model)
        self._handles = [model.heads[t].fc.register_forward_hook(self._recorder(t)) for t in self.tasks]
        self._split = model.parameter_split()
        self._hooked = model

    def _recorder(self, task: str):
        def record(module, args, output):
            if self._armed:
                self._seen[task] = (args[0], output)
        return record

    def combine(self, losses):
        return self._stack(losses).sum()   # the warm-up's objective (backward aggregates after it)

    def backward(self, step):
        if self._hooked is not step.model:
            self._hook(step.model)
        self._armed = True
        try:
            losses = step.losses()
        finally:
            self._armed = False
        seen, self._seen = self._seen, {}
        if set(seen) != set(self.tasks):
            raise ConfigError("bayesagg_mtl reads each head's input during the step's forward pass; this step's "
                              f"losses were computed before it asked (heads seen: {', '.join(seen) or 'none'})")
        L = self._ordered(losses)
        get = getattr(step, "targets", None)
        try:
            targets = get() if get is not None else None
        except ConfigError:   # a GivenStep without given_targets
            targets = None
        if targets is None:
            raise ConfigError(NO_TARGETS)
        Y = [targets[t] for t in self.tasks]
        if self.k == 0:
            self._check_loss(L, seen, Y)
        r, rows, labels, keep = self._rows(seen, Y)
        extra = step.extra()
        shared, own = self._split
        task_params = [p for ps in own.values() for p in ps]
        k, a = self.k, self.args
        bayes = k >= a.bayesagg_warmup
        if bayes:   # the current last layers; at a window's start, the full-data posterior from the window before
            heads = [self._hooked.heads[t].fc for t in self.tasks]
            Ws = [finite(torch.cat([fc.weight, fc.bias[:, None]], 1).detach().float()) for fc in heads]
            if self._prior is None or k % a.bayesagg_window == 0:
                self._prior = self._full_posteriors(Ws)
        self.k += 1
        self._open.append((rows, labels))
        if self.k % a.bayesagg_window == 0:   # the window closes: its rows make the next window's prior
            self._last = (torch.cat([x for x, _ in self._open]), torch.cat([y for _, y in self._open]))
            self._open = []
        if not bayes:   # their linear-scalarisation epochs
            total = self.combine(losses)
            (total if extra is None else total + extra).backward()
            return total.detach()
        # the heads: their own loss's gradient (their backward_last_layer)
        torch.autograd.backward(sum(L) if extra is None else sum(L) + extra, inputs=task_params, retain_graph=True)
        n, D = rows.shape
        mu = rows.new_zeros(n, len(self.tasks), D)
        var = rows.new_ones(n, len(self.tasks), D)
        valid = labels != IGNORE
        for i, (W, (m0, lam0)) in enumerate(zip(Ws, self._prior, strict=True)):
            at = valid[:, i]
            h, y = rows[at], labels[at, i]
            mean, _, chol = posterior(h, y, W, m0, lam0)
            mu[at, i], var[at, i] = self._moments(h, y, mean, chol, W.shape[0])
        update, share = aggregate(mu, var, valid, n)
        self._share = share.mean((0, 2)) * len(self.tasks)
        grad = update.new_zeros(keep.numel(), D)
        grad[keep] = update
        poison = 0 * sum(x.detach().float() for x in L)   # a non-finite loss reaches the gradients, so the run names it
        torch.autograd.backward(r, grad_tensors=(grad.view(r.shape) + poison).to(r.dtype), inputs=shared,
                                retain_graph=extra is not None)
        add_extra_grads(shared, extra)
        return None   # no combined loss: the gradients were aggregated (the task losses are checked)

    def _rows(self, seen, Y):
        """(the representation node, its rows that some task labels [n, D] in fp32, their labels [n, T], the mask
        of those rows among all). Tagging heads read one tensor (the tokens); classification heads each pool the
        same features with the same mask, so the first task's pooled vector stands for every task's."""
        inputs = [seen[t][0] for t in self.tasks]
        r = inputs[0]
        if any(x.shape != r.shape for x in inputs) or any(y.shape != r.shape[:-1] for y in Y):
            raise ConfigError("bayesagg_mtl needs every head to read the same representation of the same examples: "
                              f"inputs {[tuple(x.shape) for x in inputs]}, labels {[tuple(y.shape) for y in Y]}")
        flat = finite(r.detach().reshape(-1, r.shape[-1]).float())
        labels = torch.stack([y.reshape(-1) for y in Y], dim=1)
        keep = (labels != IGNORE).any(1)
        return r, flat[keep], labels[keep], keep

    def _check_loss(self, L, seen, Y) -> None:
        """Once, at the first step: the step's losses are the plain cross-entropies of the heads' logits with
        these labels, the loss the posterior and the moments are of (label smoothing would not be). One host sync."""
        plain = torch.stack([F.cross_entropy(seen[t][1].float().reshape(-1, seen[t][1].shape[-1]), y.reshape(-1),
                                             ignore_index=IGNORE) for t, y in zip(self.tasks, Y, strict=True)])
        given = torch.stack([x.detach().float() for x in L])
        fine = ~torch.isfinite(given) | torch.isclose(plain, given, rtol=1e-3, atol=1e-5)
        if not bool(fine.all()):
            bad = [t for t, ok in zip(self.tasks, fine.tolist(), strict=True) if not ok]
            raise ConfigError(f"bayesagg_mtl's posterior and gradient moments are of the plain cross-entropy of the "
                              f"heads' logits with the step's labels (the official code's loss); the loss of "
                              f"{', '.join(bad)} is not (label smoothing? set tasks.<task>.label_smoothing=0)")

    def _full_posteriors(self, Ws: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each task's posterior from N(0, gamma I) and the last complete window's rows, at its current W."""
        rows, labels = self._last
        out = []
        for i, W in enumerate(Ws):
            at = labels[:, i] != IGNORE
            P = W.numel()
            prior = torch.eye(P, dtype=W.dtype, device=W.device) / self.args.bayesagg_gamma
            mean, precision, _ = posterior(rows[at], labels[at, i], W, W.new_zeros(P), prior)
            out.append((mean, precision))
        return out

    def _moments(self, h, y, mean, chol, C) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, sigma2 [n, D] of the gradient w.r.t. each row, from draws of N(mean, (L L^T)^-1), in chunks."""
        S, (n, D) = self.args.bayesagg_samples, h.shape
        s1, s2 = h.new_zeros(n, D), h.new_zeros(n, D)
        per = max(1, CHUNK // max(1, n * max(C, D)))
        for i in range(0, S, per):
            m = min(per, S - i)
            draws = self.draw(mean, chol, m).reshape(m, C, D + 1)
            a, b = moments_of(h, y, draws[..., :-1], draws[..., -1])
            s1, s2 = s1 + a, s2 + b
        mu = s1 / S
        return mu, (s2 / S - mu * mu).clamp_min(1e-8) ** self.args.bayesagg_power

    def draw(self, mean: torch.Tensor, chol: torch.Tensor, m: int) -> torch.Tensor:
        """m draws [m, P] of N(mean, Lambda^-1), Lambda = L L^T: mean + L^-T eps (covariance L^-T L^-1)."""
        eps = torch.randn(mean.numel(), m, generator=self.gen, device=mean.device, dtype=mean.dtype)
        return (mean[:, None] + torch.linalg.solve_triangular(chol.mT, eps, upper=True)).T

    def weights(self):
        """Each task's mean share of the precision over rows and dimensions, times T (1 each: equal shares)."""
        return super().weights() if self._share is None else self._per_task(self._share)
