"""Loss-scale and gradient balancing methods of LibMTL's collection, written from their papers:

* ``stch`` (a loss weighting): the smooth Tchebycheff scalarization of the task losses;
* ``db_mtl``, ``imtl``, ``moco`` (on the per-task gradients of the shared parameters): they subclass
  ``aggregators.GradientAggregation``, so the Jacobian rows, the task-specific parameters' own
  gradients, the regulariser and the torchrun averaging are the aggregators' own code; each method
  only says how the rows become one update (and, for DB-MTL and IMTL, which losses give the rows).

The stateful ones (DB-MTL's and MoCo's moving averages) see the Jacobian averaged over torchrun
processes, so every process keeps the same state: none of them is ``single_process``.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from .aggregators import GradientAggregation
from .errors import ConfigError
from .weighting import WEIGHTINGS, Weighting


def decayed(step_size: float, sigma: float, k: int) -> float:
    """A step size decayed as ``step_size / k^sigma`` at step ``k`` (1, 2, ...): sigma = 0 keeps it."""
    return step_size / k ** sigma


def project_onto_simplex(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of ``v`` onto the probability simplex {x >= 0, sum x = 1} (Held et al.
    1974; the sort-based form of Wang & Carreira-Perpinan 2013), without a host sync."""
    u, _ = torch.sort(v, descending=True)
    cumulative = u.cumsum(0) - 1
    k = torch.arange(1, len(v) + 1, device=v.device, dtype=v.dtype)
    rho = (u - cumulative / k > 0).sum()          # the condition holds on a prefix: its length
    theta = cumulative.gather(0, (rho - 1).clamp(min=0).view(1)) / rho.clamp(min=1)
    return (v - theta).clamp(min=0)


# ---------------------------------------------------------------- loss weightings

@WEIGHTINGS.register("stch")
class SmoothTchebycheff(Weighting):
    """Smooth Tchebycheff (Lin et al., ICML 2024): mu log sum_t exp(lambda_t (L_t - z_t) / mu), z = 0.

    Paper: "Smooth Tchebycheff Scalarization for Multi-Objective Optimization".

    As mu -> 0 it is the Tchebycheff max_t lambda_t (L_t - z_t) (the worst weighted task), as mu grows
    it approaches the linear mean (plus a constant); each task's weight is lambda_t times the softmax of
    the weighted gaps. Preferences lambda: ``weighting_args.stch_preference`` (task -> weight, missing 1)
    normalised onto the simplex as in the paper, equal by default. ``weighting_args.stch_mu`` is mu.

    The ideal point z is 0 for every task: the paper's z* is each objective's ideal (lowest) value, and
    the task losses here (cross-entropies) have infimum 0. Where this differs from LibMTL: LibMTL (and
    the paper authors' MTL code) first trains some epochs on sum_t log L_t, then uses
    log(L_t / nadir_t) with nadir_t the warm-up epoch's mean loss, times T; here the paper's equation on
    the raw losses, no warm-up, no log, no factor T (so the gradient is 1/T the scale of the mean loss's:
    AdamW is invariant to a constant loss scale, up to its epsilon and the gradient-norm clip).
    """

    needs_every_task = True   # a max over the tasks needs every task's loss

    def __init__(self, tasks, cfg=None, seed=0):
        super().__init__(tasks, cfg, seed)
        unknown = set(self.cfg.stch_preference) - set(self.tasks)
        if unknown:
            raise ConfigError(f"stch preferences for tasks not in this run: {', '.join(sorted(unknown))}")
        if self.cfg.stch_mu <= 0:
            raise ConfigError(f"weighting_args.stch_mu must be positive, not {self.cfg.stch_mu}")
        pref = [float(self.cfg.stch_preference.get(t, 1.0)) for t in self.tasks]
        if min(pref) < 0 or sum(pref) <= 0:
            raise ConfigError(f"stch preferences must be non-negative with a positive sum, not {pref}")
        self.preference = torch.tensor(pref) / sum(pref)

    def to(self, device):
        super().to(device)
        self.preference = self.preference.to(device)
        self.ideal = torch.zeros(len(self.tasks), device=device)
        self.w = self.preference.clone()   # d total / d L_t of the last step
        return self

    def combine(self, losses):
        mu = self.cfg.stch_mu
        gaps = self.preference * (self._stack(losses) - self.ideal) / mu
        self.w = self.preference * torch.softmax(gaps.detach(), dim=0)
        return mu * torch.logsumexp(gaps, dim=0)

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.w, strict=True)}


# ---------------------------------------------------------------- on the per-task gradients

class _Stateful(GradientAggregation):
    """A gradient method with a moving average of the per-task gradients of the shared parameters:
    Jacobian rows w.r.t. the shared parameters only (a feature tensor changes shape from batch to
    batch, and its rows are per-example, so averaging them over steps has no meaning)."""

    def __init__(self, tasks, cfg=None, seed=0):
        super().__init__(tasks, cfg, seed)
        if self.cfg.jacobian != "params":
            raise ConfigError(f"{type(self).__name__} averages the shared parameters' gradients over steps; "
                              f"weighting_args.jacobian=features is not for it")

    def make(self):
        self.k = 0   # steps seen
        return self.update

    @abstractmethod
    def update(self, jacobian: torch.Tensor) -> torch.Tensor:
        """The shared update from this step's Jacobian (rows: tasks), advancing the method's state."""


@WEIGHTINGS.register("db_mtl")
class DualBalancing(_Stateful):
    """DB-MTL (Lin et al., 2023): log-losses; each task's averaged gradient scaled to the largest norm.

    Paper: "Dual-Balancing for Multi-Task Learning", arXiv 2308.12029.

    Loss-scale balancing: every task's loss L_t is replaced by log L_t (log(L_t + 1e-8)), so the task
    gradients are grad L_t / L_t, whatever the loss's scale; the task-specific parameters get these too.
    Gradient-magnitude balancing, on the shared parameters: g_t <- beta_k g_t + (1 - beta_k) grad log L_t
    (g_t = 0 at first; beta_k = ``db_beta`` / k^``db_beta_sigma``, as in the paper's Algorithm 1: 0.9 and
    0, i.e. a plain EMA, by default), then the update sum_t (max_s |g_s| / |g_t|) g_t: every task
    contributes the largest norm. ``weights()``: the factors max_s |g_s| / |g_t|.
    """

    eps = 1e-8

    def make(self):
        self.alpha = torch.ones(len(self.tasks))
        self.ema = None
        return super().make()

    def backward(self, losses, model, extra=None):
        logs = {t: torch.log(v + self.eps) for t, v in zip(self.tasks, self._ordered(losses), strict=True)}
        return super().backward(logs, model, extra)

    def update(self, jacobian):
        self.k += 1
        beta = decayed(self.cfg.db_beta, self.cfg.db_beta_sigma, self.k)
        if self.ema is None:
            self.ema = torch.zeros_like(jacobian)
        self.ema = beta * self.ema + (1 - beta) * jacobian
        norms = self.ema.norm(dim=1)
        self.alpha = norms.max() / (norms + self.eps)
        return self.alpha @ self.ema

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.alpha, strict=True)}


@WEIGHTINGS.register("moco")
class MoCo(_Stateful):
    """MoCo (Fernando et al., ICLR 2023): projected-gradient simplex weights on tracked task gradients.

    Paper: "Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent Approach".

    Per step k, on the shared parameters (the paper's Algorithm 1): the trackers
    y_t <- y_t - beta_k (y_t - grad L_t) (y = 0 at first); the weights
    lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda) (lambda = 1/T at first); the update
    Y^T lambda, with the new y and lambda. beta_k = ``moco_beta`` / k^``moco_beta_sigma``, gamma_k =
    ``moco_gamma`` / k^``moco_gamma_sigma``, rho = ``moco_rho``: LibMTL's defaults 0.5, 0.5, 0.1, 0.5, 0.
    The task-specific parameters get their own task's gradient.

    Where this differs from LibMTL: LibMTL (after the authors' code) first rescales each task gradient to
    the norm L_t, and replaces the projection onto the simplex by a softmax; here the paper's projected
    step on the raw gradients.
    """

    def make(self):
        self.lam = torch.full((len(self.tasks),), 1 / len(self.tasks))
        self.y = None
        return super().make()

    def update(self, jacobian):
        self.k += 1
        c = self.cfg
        beta = decayed(c.moco_beta, c.moco_beta_sigma, self.k)
        gamma = decayed(c.moco_gamma, c.moco_gamma_sigma, self.k)
        if self.y is None:
            self.y = torch.zeros_like(jacobian)
            self.lam = self.lam.to(jacobian)
        self.y = self.y - beta * (self.y - jacobian)
        gram = self.y @ self.y.T + c.moco_rho * torch.eye(len(self.tasks), device=jacobian.device)
        self.lam = project_onto_simplex(self.lam - gamma * gram @ self.lam)
        return self.lam @ self.y

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.lam, strict=True)}


@WEIGHTINGS.register("imtl")
class IMTL(GradientAggregation):
    """IMTL (Liu et al., ICLR 2021): learned loss scales (IMTL-L) + IMTL-G's weights on their gradients.

    Paper: "Towards Impartial Multi-task Learning" (the hybrid IMTL).

    IMTL-L: each task's loss becomes e^{s_t} L_t - s_t, with s_t (0 at first) trained by the run's
    optimizer on that objective (its gradient e^{s_t} L_t - 1 drives every scaled loss towards 1).
    IMTL-G: on the shared parameters, with g_t the gradient of e^{s_t} L_t, the weights alpha (summing
    to 1) for which sum_t alpha_t g_t has equal projections on every unit vector g_t / |g_t|
    (torchjd's ``IMTLG``, the paper's closed form generalised to linearly dependent gradients). The
    task-specific parameters get the gradient of their own scaled loss. ``weights()``: alpha_t e^{s_t},
    each raw loss's weight on the shared parameters.

    Where this differs from the paper: the paper takes the gradients w.r.t. the shared features z (like
    MGDA-UB); here, like ``imtl_g``, w.r.t. the shared parameters by default, since a run of tasks with
    different inputs has no one feature tensor; ``weighting_args.jacobian=features`` gives the paper's
    form for one input group under hard sharing.
    """

    def make(self):
        from torchjd.aggregation import IMTLG

        weighting = IMTLG().weighting   # Jacobian -> its Gramian -> IMTL-G's weights
        self.alpha = torch.full((len(self.tasks),), 1 / len(self.tasks))

        def aggregate(jacobian: torch.Tensor) -> torch.Tensor:
            # a non-finite row (a non-finite loss) would stop the SVD of IMTL-G's pseudo-inverse with an
            # error: the weights of a zero Jacobian (0) instead, so the non-finite rows reach the gradients
            # and the run's check names the task, as with every method
            finite = torch.isfinite(jacobian).all()
            self.alpha = weighting(torch.where(finite, jacobian, torch.zeros_like(jacobian))).detach()
            return self.alpha @ jacobian

        return aggregate

    def to(self, device):
        super().to(device)
        self.log_scales = torch.zeros(len(self.tasks), device=device, requires_grad=True)
        return self

    def parameters(self):
        return [self.log_scales]

    def combine(self, losses):
        s = self.log_scales[[self.tasks.index(t) for t in losses]]
        return (torch.exp(s) * torch.stack(list(losses.values())) - s).sum()

    def backward(self, losses, model, extra=None):
        raw = self._ordered(losses)
        s = self.log_scales
        # IMTL-L: s_t descends its own objective e^{s_t} L_t - s_t (the losses are constants here)
        objective = (torch.exp(s) * torch.stack([v.detach() for v in raw]).to(s.dtype) - s).sum()
        torch.autograd.backward(objective, inputs=[s])
        scale = torch.exp(s.detach())
        return super().backward({t: scale[i] * v for i, (t, v) in enumerate(zip(self.tasks, raw, strict=True))},
                                model, extra)

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.alpha.cpu() * torch.exp(self.log_scales.detach().cpu()),
                                            strict=True)}
