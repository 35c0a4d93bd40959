"""The base of the methods on the per-task gradients: one Jacobian row per task, combined into one update.

Each task's row is the gradient of that task's loss alone, by its own backward pass; the
task-specific parameters get their own task's gradient by ordinary backprop (or, with
``task_grads=weighted``, times the method's task weight). With ``weighting_args.jacobian=features``
the rows are gradients w.r.t. the shared features of one input group (MGDA-UB with ``mgda``), and the
aggregate is backpropagated once into the shared parameters. Most methods are torchjd's aggregators
(``make`` returns one); a method of its own returns a function of the Jacobian instead.

Two variants of the base: ``TwoBatches`` (weights from two independent half-batches: MoDo, SDMGrad)
and ``Stateful`` (a moving average of the task gradients across steps: DB-MTL, MoCo).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..run.distributed import mean_over_ranks
from .base import Needs, Weighting


@dataclass
class GradientArgs:
    jacobian: str = "params"      # Jacobian rows w.r.t. the shared "params", or w.r.t. the shared "features"
                                  # (one input group under hard sharing; with mgda: MGDA-UB, Sener & Koltun 2018)
    task_grads: str = "auto"      # the task-specific parameters' gradient: "own" (their loss alone), "weighted"
                                  # (x the method's task weight), "auto" (the method's paper / official code:
                                  # ``own_task_grads``: weighted for nash_mtl, excess_mtl, modo, sdmgrad; own elsewhere)
    autogram: bool = False        # the Gramian J J^T by torchjd's autogram engine and one backward of the weighted
                                  # losses, instead of one backward per task (methods whose weights need the
                                  # Gramian alone; methods/autogram.py). Off: slower on the CPUs measured
                                  # (docs/methods.md)


def decayed(step_size: float, sigma: float, k: int) -> float:
    """A step size decayed as ``step_size / k^sigma`` at step ``k`` (1, 2, ...): sigma = 0 keeps it."""
    return step_size / k ** sigma


def add_extra_grads(shared: list[torch.Tensor], extra: torch.Tensor | None, retain: bool = False) -> None:
    """A regulariser's own gradient added to the shared parameters' (added, not aggregated)."""
    if extra is None:
        return
    for p, g in zip(shared, torch.autograd.grad(extra, shared, allow_unused=True, retain_graph=retain), strict=True):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


def torchjd_aggregator(name: str, **kwargs):
    """``torchjd.aggregation.<name>(**kwargs)``, imported when first used (the registry stays light)."""
    import torchjd.aggregation as aggregation

    return getattr(aggregation, name)(**kwargs)


class GradientAggregation(Weighting):
    """Per-task gradients of the shared parameters (one Jacobian row per task) combined by ``make()``'s
    aggregator; the task-specific parameters get their own task's gradient by ordinary backprop."""

    Args = GradientArgs
    extra: str = "full"           # the torchjd extra the aggregator needs
    own_task_grads = "own"        # the method's own convention for the task-specific parameters

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.jacobian not in ("params", "features"):
            raise ConfigError(f"weighting_args.jacobian must be params or features, not {self.args.jacobian!r}")
        if self.args.task_grads not in ("auto", "own", "weighted"):
            raise ConfigError(f"weighting_args.task_grads must be auto, own or weighted, not {self.args.task_grads!r}")
        if self.args.autogram and self.args.jacobian != "params":
            raise ConfigError("weighting_args.autogram computes the Gramian of the shared parameters' Jacobian; "
                              "with jacobian=features the rows are already one cheap backward each")

    @property
    def needs(self) -> Needs:
        # autogram: torchrun's processes would each weight their own Gramian, not the mean Jacobian's
        return Needs(every_task=True, one_feature_tensor=self.args.jacobian == "features",
                     single_process=self.args.autogram)

    @property
    def uses_features(self) -> bool:
        """The Jacobian w.r.t. the shared features (else the shared parameters)."""
        return self.args.jacobian == "features"

    def make(self) -> Callable:
        raise ConfigError(f"{type(self).__name__} has no aggregator")

    def to(self, device):
        super().to(device)
        try:
            self.aggregator = self.make()
        except ImportError as e:
            raise ConfigError(f"{type(self).__name__} needs an optional dependency ({e}); "
                              f"pip install 'torchjd[{self.extra}]'") from None
        if self.task_grads == "weighted" and not isinstance(self, TwoBatches) \
                and not hasattr(self.aggregator, "weighting"):
            raise ConfigError(f"weighting_args.task_grads=weighted needs task weights; {type(self).__name__} "
                              "combines the gradients without any (use own)")
        if self.args.autogram and not self.takes_gramian:
            raise ConfigError(f"weighting_args.autogram: {type(self).__name__} needs the task gradients themselves, "
                              "not only their Gramian (use autogram=false)")
        return self

    @property
    def takes_gramian(self) -> bool:
        """Its weights are a function of the Gramian J J^T alone (a torchjd Gramian-weighted aggregator)."""
        return hasattr(self.aggregator, "gramian_weighting")

    def _gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        """The task weights from the Gramian (a subclass reorders the tasks here, as PCD)."""
        return self.aggregator.gramian_weighting(gramian)

    def check(self, model):
        if not model.parameter_split()[0]:
            raise ConfigError(f"{type(self).__name__} aggregates gradients of shared parameters; "
                              f"this architecture shares none")

    def combine(self, losses):
        return self._stack(losses).sum()   # only for reporting; backward does the work

    def backward(self, step):
        if not self.args.autogram:
            return self.aggregate(step, step.losses())
        if getattr(self, "_engine_of", None) is not step.model:
            from .autogram import GramianEngine

            self._engine = GramianEngine(step.model, step.model.parameter_split()[0])
            self._engine_of = step.model
        with self._engine.tracking():   # the step's forward: the one whose Gramian is taken
            losses = step.losses()
        return self.aggregate(step, losses)

    def aggregate(self, step, losses: dict[str, torch.Tensor]) -> None:
        """The update from these losses' gradients (a subclass may hand over transformed losses)."""
        # the losses themselves, not rows of a stack: a row's backward would pass through the
        # stack into every task's graph (zeros for the others, but the whole walk each time)
        L = self._ordered(losses)
        extra = step.extra()
        model = step.model
        if getattr(self, "_split_of", None) is not model:   # walk the modules once, not every step
            shared, own = model.parameter_split()
            self._split = (shared, [p for ps in own.values() for p in ps])
            self._split_of = model
        shared, task_params = self._split
        weighted = self.task_grads == "weighted"
        if not weighted:   # each task parameter only reaches its own loss: the sum's gradient is its own
            total = sum(L) if extra is None else sum(L) + extra
            torch.autograd.backward(total, inputs=task_params, retain_graph=True)
        if self.uses_features:
            w = self._through_features(L, step.features(), shared, extra, keep=weighted)
        else:
            w = self._through_params(L, shared, extra, keep=weighted)
        if weighted:   # the heads' gradients weighted as the shared update's rows (Nash-MTL's official code)
            torch.autograd.backward(sum(wt * loss for wt, loss in zip(w.detach(), L, strict=True)),
                                    inputs=task_params)
        return None   # no combined loss: the gradients were aggregated (the task losses are checked)

    @property
    def task_grads(self) -> str:
        """How the task-specific parameters get their gradient: "own" (their task's loss alone) or
        "weighted" (by the aggregator's task weights); ``weighting_args.task_grads=auto`` is the
        method's own convention (``own_task_grads``)."""
        return self.own_task_grads if self.args.task_grads == "auto" else self.args.task_grads

    def _aggregate(self, J: torch.Tensor, keep: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(task weights when wanted, the update) of the Jacobian J. A non-finite row (a non-finite
        loss) would stop a solver (an SVD, a QP) with its own error: the method sees it as zeros, and
        the non-finite values are added back to the update, so they reach the gradients and the run's
        check names the task, as for every method (no host sync)."""
        finite = torch.where(torch.isfinite(J), J, torch.zeros_like(J))
        poison = 0 * J.sum(0)   # nan where a row is, 0 elsewhere
        if not keep:
            return None, self.aggregator(finite) + poison
        w = self.aggregator.weighting(finite)
        return w, w @ finite + poison

    def _through_params(self, L: list[torch.Tensor], shared: list[torch.Tensor], extra,
                        keep: bool) -> torch.Tensor | None:
        if self.args.autogram:
            return self._through_gramian(L, shared, extra, keep)
        J = self._jacobian(L, shared, retain=extra is not None or keep)
        w, update = self._aggregate(J, keep)
        self._set_shared(shared, update, extra, keep)
        return w

    def _through_gramian(self, L: list[torch.Tensor], shared: list[torch.Tensor], extra,
                         keep: bool) -> torch.Tensor | None:
        """The weights from the Gramian (autogram), then one backward of sum_t w_t L_t into the shared
        parameters: w^T J without J. A non-finite Gramian entry is 0 to the solver; the loss itself
        still reaches the gradients (w_t x nan), so the run's check names the task."""
        G = self._engine.gramian(L)
        w = self._gramian_weights(torch.where(torch.isfinite(G), G, torch.zeros_like(G))).detach().to(L[0].dtype)
        torch.autograd.backward(sum(wt * loss for wt, loss in zip(w, L, strict=True)), inputs=shared,
                                retain_graph=extra is not None or keep)
        add_extra_grads(shared, extra, retain=keep)
        return w if keep else None

    def _jacobian(self, L: list[torch.Tensor], shared: list[torch.Tensor], retain: bool) -> torch.Tensor:
        """One row per task: the gradient of its loss w.r.t. the shared parameters, by a backward of
        that loss alone (it walks only that task's graph; a vector-Jacobian product of the stacked
        losses would walk every task's), averaged over torchrun ranks (every rank the same matrix)."""
        rows = []
        for i, loss in enumerate(L):
            grads = torch.autograd.grad(loss, shared, retain_graph=i < len(L) - 1 or retain, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                   for g, p in zip(grads, shared, strict=True)]))
        return mean_over_ranks(self.world, torch.stack(rows))

    @staticmethod
    def _set_shared(shared: list[torch.Tensor], update: torch.Tensor, extra, keep: bool) -> None:
        """The update into the shared parameters' .grad, plus a regulariser's own gradient (added,
        not aggregated)."""
        offset = 0
        for p in shared:
            p.grad = update[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        if extra is not None:
            for p, g in zip(shared, torch.autograd.grad(extra, shared, allow_unused=True, retain_graph=keep),
                            strict=True):
                if g is not None:
                    p.grad += g

    def _through_features(self, L: list[torch.Tensor], z: torch.Tensor, shared: list[torch.Tensor], extra,
                          keep: bool = False) -> torch.Tensor | None:
        """Jacobian rows w.r.t. the shared features z (one backward of each loss, stopping at z),
        aggregated, then backpropagated once from z into the shared parameters: with MGDA's min-norm
        weights this is MGDA-UB (Sener & Koltun 2018), the weights of the gradients' upper bound."""
        # rows in fp32 even under bf16 autocast: the min-norm solve is ill-conditioned in 8 bits of mantissa
        rows = [torch.autograd.grad(loss, z, retain_graph=True)[0].flatten().float() for loss in L]
        w, update = self._aggregate(torch.stack(rows), keep)
        torch.autograd.backward(z, grad_tensors=update.view_as(z).to(z.dtype), inputs=shared,
                                retain_graph=extra is not None or keep)
        add_extra_grads(shared, extra, retain=keep)
        return w


class TwoBatches(GradientAggregation):
    """Weights from two independent mini-batches (MoDo, SDMGrad): the step's batch of each task is split
    into halves (``step.half_losses()``); the weighting reads A = J_1 J_2^T (not a Gramian), and the
    update is the weights times the halves' mean Jacobian — the gradient of
    sum_t lambda_t (L_t^1 + L_t^2) / 2, task-specific parameters included (the papers' update, and
    torchjd's example). Shared parameters only (``jacobian=params``)."""

    own_task_grads = "weighted"

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.jacobian != "params":
            raise ConfigError(f"{type(self).__name__} takes the Jacobian of the shared parameters on two batches; "
                              "weighting_args.jacobian=features is not offered")

    def backward(self, step):
        first, second = step.half_losses()
        La, Lb = self._ordered(first), self._ordered(second)
        extra = step.extra()
        shared, own = step.model.parameter_split()
        task_params = [p for ps in own.values() for p in ps]
        Ja = self._jacobian(La, shared, retain=True)
        Jb = self._jacobian(Lb, shared, retain=True)
        poison = 0 * (Ja.sum(0) + Jb.sum(0))   # a non-finite loss reaches the gradients, not the solver
        Ja, Jb = (torch.where(torch.isfinite(J), J, torch.zeros_like(J)) for J in (Ja, Jb))
        w = self.aggregator(Ja @ Jb.T)
        self._set_shared(shared, w @ ((Ja + Jb) / 2) + poison, extra, keep=True)
        mean = [(a + b) / 2 for a, b in zip(La, Lb, strict=True)]
        scale = w.detach() if self.task_grads == "weighted" else torch.ones_like(w)
        torch.autograd.backward(sum(c * loss for c, loss in zip(scale, mean, strict=True)), inputs=task_params)
        self.last = w.detach()
        return None

    def weights(self):
        last = getattr(self, "last", None)
        return super().weights() if last is None else self._per_task(last)


class Stateful(GradientAggregation):
    """A gradient method with a moving average of the per-task gradients of the shared parameters:
    Jacobian rows w.r.t. the shared parameters only (a feature tensor changes shape from batch to
    batch, and its rows are per-example, so averaging them over steps has no meaning). The moving
    averages see the Jacobian averaged over torchrun processes, so every process keeps the same state."""

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.jacobian != "params":
            raise ConfigError(f"{type(self).__name__} averages the shared parameters' gradients over steps; "
                              f"weighting_args.jacobian=features is not for it")

    def make(self):
        self.k = 0   # steps seen
        return self.update

    @abstractmethod
    def update(self, jacobian: torch.Tensor) -> torch.Tensor:
        """The shared update from this step's Jacobian (rows: tasks), advancing the method's state."""
