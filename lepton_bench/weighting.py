"""How the task losses of a step become parameter gradients.

Two families behind one registry:

* **loss weightings** (written here, small and stateful) turn the per-task losses into one scalar:
  ``ew``, ``static``, ``uw``, ``dwa``, ``rlw``, ``gls``, ``famo``, ``gradnorm``;
* **gradient aggregators** (from torchjd) combine the per-task gradients of the *shared*
  parameters (the rows of the Jacobian) into one update, while each task-specific parameter
  gets its own task's gradient: ``pcgrad``, ``mgda``, ``cagrad``, ``nash_mtl``, ``imtl_g``,
  ``aligned_mtl``, ``upgrad``, ``dualproj``, ``graddrop`` (in ``aggregators.py``);
* LibMTL's balancing methods, written from their papers (in ``balancing.py``): ``stch`` (a loss
  weighting), and ``db_mtl``, ``imtl`` (IMTL-L + IMTL-G), ``moco`` on the per-task gradients;
* ``auto_lambda``, loss weights meta-learned by a one-step look-ahead on a second batch (``lookahead.py``).

A weighting knows losses and gradients, never data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from .config import WeightingConfig
from .distributed import World
from .errors import ConfigError
from .registry import Registry
from .variants import register_weighting_variant

if TYPE_CHECKING:
    from .lookahead import Lookahead


class Weighting(ABC):
    """Base class: ``backward`` fills the ``.grad`` of the model's parameters from the losses."""

    needs_every_task = False      # True: needs every task's loss at every step (sampler 'all')
    needs_losses_after_step = False   # True: ``after_step`` wants the losses re-computed after the update
    single_process = False        # True: keeps state from this process's own losses or gradients,
                                  # which torchrun processes would not share: refused there
    world = World()               # the torchrun world, set by ``train.prepare``
    wants_features = False        # True: ``train_step`` sets ``self.features`` (the shared features) first
    two_batches = False           # True: ``train_step`` splits each task's batch into halves and sets
                                  # ``self.halves`` (each half's losses) first (MoDo, SDMGrad)
    halves: list[dict[str, torch.Tensor]] | None = None
    meta_batches = False          # True: ``train_step`` draws a second batch per task from another training
                                  # stream and sets ``self.lookahead`` first (Auto-Lambda, ``lookahead.py``)
    lookahead: Lookahead | None = None
    features: torch.Tensor | None = None

    def __init__(self, tasks: Sequence[str], cfg: WeightingConfig | None = None, seed: int = 0):
        self.tasks = list(tasks)
        self.cfg = cfg or WeightingConfig()
        self.seed = seed
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> Weighting:
        self.device = device
        return self

    def parameters(self) -> list[torch.Tensor]:
        """Learnable weighting parameters trained by the run's optimizer (e.g. UW's log-variances)."""
        return []

    def check(self, model: nn.Module) -> None:
        """Refuse a model this method cannot work on (e.g. no shared parameters)."""

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module,
                 extra: torch.Tensor | None = None) -> torch.Tensor | None:
        """Fill the gradients; return the combined loss (detached, on the device; the run checks
        it is finite without a host sync), or None for a method that combines no loss."""
        total = self.combine(losses)
        (total if extra is None else total + extra).backward()
        return total.detach()

    @abstractmethod
    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar to backpropagate, from the losses of the tasks that ran this step."""

    def after_step(self, losses: dict[str, torch.Tensor]) -> None:
        """Called after the optimizer step (with re-computed losses if ``needs_losses_after_step``)."""

    def weights(self) -> dict[str, float]:
        """Current task weights, for records (host values; call off the hot path)."""
        return dict.fromkeys(self.tasks, 1.0)

    def _ordered(self, losses: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Every task's loss, in task order (an error when one is missing)."""
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise ConfigError(f"{type(self).__name__} needs a loss of every task at every step; "
                              f"missing {', '.join(missing)} (use the 'all' sampler)")
        return [losses[t] for t in self.tasks]

    def _stack(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(self._ordered(losses))


WEIGHTINGS: Registry[type[Weighting]] = Registry("weighting")


# ---------------------------------------------------------------- loss weightings

@WEIGHTINGS.register("ew")
class EqualWeighting(Weighting):
    """Equal weights: the plain sum of task losses, so each task's gradient keeps its STL scale."""

    def combine(self, losses):
        return torch.stack(list(losses.values())).sum()


@WEIGHTINGS.register("static")
class StaticWeighting(Weighting):
    """Static weights: fixed, from ``weighting_args.static`` (missing tasks: 1). A weight sweep is the
    baseline every adaptive method must beat (Xin et al. 2022, "Do current MTL methods work?")."""

    def __init__(self, tasks, cfg=None, seed=0):
        super().__init__(tasks, cfg, seed)
        unknown = set(self.cfg.static) - set(self.tasks)
        if unknown:
            raise ConfigError(f"static weights for tasks not in this run: {', '.join(sorted(unknown))}")
        self.w = {t: float(self.cfg.static.get(t, 1.0)) for t in self.tasks}

    def combine(self, losses):
        return sum(self.w[t] * v for t, v in losses.items())

    def weights(self):
        return dict(self.w)


@WEIGHTINGS.register("uw")
class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty (Kendall et al., CVPR 2018): sum of exp(-s_t)/2 * L_t + s_t/2,
    with the log-variances s_t learned by the run's optimizer."""

    def to(self, device):
        super().to(device)
        self.log_vars = torch.zeros(len(self.tasks), device=device, requires_grad=True)
        return self

    def parameters(self):
        return [self.log_vars]

    def combine(self, losses):
        idx = [self.tasks.index(t) for t in losses]
        s = self.log_vars[idx]
        return (0.5 * torch.exp(-s) * torch.stack(list(losses.values())) + 0.5 * s).sum()

    def weights(self):
        return {t: float(0.5 * torch.exp(-v)) for t, v in zip(self.tasks, self.log_vars.detach(), strict=True)}


@WEIGHTINGS.register("dwa")
class DynamicWeightAverage(Weighting):
    """Dynamic Weight Average (Liu et al., CVPR 2019): w_t = T softmax(r_t / temp), with r_t the
    ratio of task t's last two average losses. The paper averages per epoch; here per
    ``dwa_window`` steps. Weights are 1 until two windows have passed. No host syncs."""

    single_process = True

    needs_every_task = True

    def to(self, device):
        super().to(device)
        T = len(self.tasks)
        self.w = torch.ones(T, device=device)
        self._sum = torch.zeros(T, device=device)
        self._count = 0
        self.history: list[torch.Tensor] = []   # window averages, newest last
        return self

    def combine(self, losses):
        L = self._stack(losses)
        total = (self.w * L).sum()   # this window's weights: from the two windows before it, as the paper's epochs
        self._sum += L.detach()
        self._count += 1
        if self._count == self.cfg.dwa_window:   # the window closes: its average sets the next window's weights
            self.push(self._sum / self._count)
            self._sum.zero_()
            self._count = 0
        return total

    def push(self, average: torch.Tensor) -> None:
        """Add one window's average losses and recompute the weights."""
        self.history = [*self.history[-1:], average]
        if len(self.history) == 2:
            r = self.history[1] / self.history[0]
            self.w = len(self.tasks) * torch.softmax(r / self.cfg.dwa_temperature, dim=0)

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.w, strict=True)}


@WEIGHTINGS.register("rlw")
class RandomLossWeighting(Weighting):
    """Random Loss Weighting (Lin et al., TMLR 2022): weights softmax(z), z ~ N(0, I), drawn anew
    every step. The litmus test: a method that does not beat it has learned nothing."""

    def to(self, device):
        super().to(device)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.w = torch.ones(len(self.tasks), device=device) / len(self.tasks)
        return self

    def combine(self, losses):
        z = torch.randn(len(self.tasks), generator=self.gen)
        self.w = torch.softmax(z, dim=0).to(self.device, non_blocking=True)
        idx = [self.tasks.index(t) for t in losses]
        return (self.w[idx] * torch.stack(list(losses.values()))).sum()

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.w, strict=True)}


@WEIGHTINGS.register("gls")
class GeometricLossStrategy(Weighting):
    """Geometric Loss Strategy (Chennupati et al., CVPR-W 2019): the geometric mean of the task
    losses, (prod_t L_t)^(1/T), which is invariant to each loss's scale."""

    needs_every_task = True

    def combine(self, losses):
        return torch.exp(torch.log(self._stack(losses)).mean())


@WEIGHTINGS.register("famo")
class FAMO(Weighting):
    """Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023). Weights z = softmax(xi);
    the step minimises sum_t z_t log L_t (scaled by c = 1 / sum_t z_t / L_t). After the update,
    xi moves (Adam, lr ``famo_lr``, decay ``famo_decay``) to favour the tasks whose log-loss fell
    least: grad xi = J_softmax^T (log L_t(before) - log L_t(after)), losses on the same batch."""

    single_process = True

    needs_every_task = True
    needs_losses_after_step = True
    eps = 1e-8

    def to(self, device):
        super().to(device)
        self.xi = torch.zeros(len(self.tasks), device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.xi], lr=self.cfg.famo_lr, weight_decay=self.cfg.famo_decay)
        self.prev: torch.Tensor | None = None
        return self

    def combine(self, losses):
        L = self._stack(losses)
        self.prev = L.detach()
        z = torch.softmax(self.xi.detach(), dim=0)
        D = L + self.eps
        c = (z / D).sum().detach()
        return (torch.log(D) * z / c).sum()

    def after_step(self, losses):
        if self.prev is None:
            return
        delta = torch.log(self.prev + self.eps) - torch.log(self._stack(losses).detach() + self.eps)
        with torch.enable_grad():
            z = torch.softmax(self.xi, dim=0)
            (grad,) = torch.autograd.grad(z, self.xi, grad_outputs=delta)
        self.opt.zero_grad()
        self.xi.grad = grad
        self.opt.step()

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, torch.softmax(self.xi.detach(), 0), strict=True)}


@WEIGHTINGS.register("gradnorm")
class GradNorm(Weighting):
    """GradNorm (Chen et al., ICML 2018): learn weights w_t so that the gradient norms
    G_t = ||grad_W w_t L_t|| on the last shared layer W approach mean(G) * r_t^alpha, with
    r_t = (L_t/L_t(0)) / mean(L/L(0)) each task's relative inverse training rate. The weights
    are renormalised to sum to T after each update."""

    single_process = True

    needs_every_task = True

    def to(self, device):
        super().to(device)
        self.w = torch.ones(len(self.tasks), device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.w], lr=self.cfg.gradnorm_lr)
        self.L0: torch.Tensor | None = None
        return self

    def check(self, model):
        if not model.parameter_split()[0]:
            raise ConfigError("gradnorm needs shared parameters; this architecture has none")

    def combine(self, losses):
        return (self.w.detach() * self._stack(losses)).sum()

    def targets(self, L: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """mean(G) * r_t^alpha, detached: the gradient norm each task should have."""
        if self.L0 is None:
            self.L0 = L.detach()
        ratio = L.detach() / self.L0
        return (G.mean() * (ratio / ratio.mean()) ** self.cfg.gradnorm_alpha).detach()

    def update(self, L: torch.Tensor, grad_norms: torch.Tensor) -> None:
        """One GradNorm step on w from the unweighted gradient norms ||grad_W L_t||."""
        with torch.enable_grad():
            G = self.w * grad_norms
            target = self.targets(L, G.detach())
            (grad,) = torch.autograd.grad((G - target).abs().sum(), self.w)
        self.opt.zero_grad()
        self.w.grad = grad
        self.opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.tasks) / self.w.sum())

    def backward(self, losses, model, extra=None):
        ordered = self._ordered(losses)   # each loss's own graph, not a row of a stack (see below)
        L = torch.stack(ordered)
        W = last_shared_weight(model)
        norms = torch.stack([torch.autograd.grad(loss, W, retain_graph=True)[0].norm() for loss in ordered])
        total = self.combine(losses)   # uses the weights before this step's update
        (total if extra is None else total + extra).backward()
        self.update(L, norms)
        return total.detach()

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.w.detach(), strict=True)}


def last_shared_weight(model: nn.Module) -> torch.Tensor:
    """The last shared weight matrix (GradNorm's W): the shared trunk's final MLP projection. A stem
    shared by an input group is shared too, but not every task reaches it (its gradient is zero for
    the tasks of other groups), so the trunk's matrices come first; a shared stem's only without one."""
    shared = [p for p in model.parameter_split()[0] if p.ndim == 2]
    ids = {id(p) for p in shared}
    in_trunk = [p for p in model.trunks.parameters() if id(p) in ids]
    if not shared:
        raise ConfigError("this architecture has no shared weight matrix")
    return (in_trunk or shared)[-1]


# The gradient aggregators (torchjd) and LibMTL's balancing methods register themselves in the same registry.
from . import aggregators, balancing, lookahead  # noqa: E402, F401

# hard-<name> for every weighting, now and for any a plugin registers later
WEIGHTINGS.when_registered(lambda name, cls: register_weighting_variant(name, WEIGHTINGS.help(name)))
