"""Gradient aggregators: torchjd's aggregators on the Jacobian of the shared parameters (or of the
shared features), registered in the weighting registry beside the loss weightings.

Each task's row is the gradient of that task's loss alone, by its own backward pass; the
task-specific parameters get their own task's gradient by ordinary backprop. With
``weighting_args.jacobian=features`` the rows are gradients w.r.t. the shared features of one input
group (MGDA-UB with ``mgda``), and the aggregate is backpropagated once into the shared parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .distributed import mean_over_ranks
from .errors import ConfigError
from .weighting import WEIGHTINGS, Weighting


class GradientAggregation(Weighting):
    """Per-task gradients of the shared parameters (one Jacobian row per task) combined by a
    torchjd aggregator; the task-specific parameters get their own task's gradient by ordinary
    backprop."""

    needs_every_task = True
    extra: str = "full"   # the torchjd extra the aggregator needs

    def __init__(self, tasks, cfg=None, seed=0):
        super().__init__(tasks, cfg, seed)
        if self.cfg.jacobian not in ("params", "features"):
            raise ConfigError(f"weighting_args.jacobian must be params or features, not {self.cfg.jacobian!r}")
        if self.cfg.task_grads not in ("auto", "own", "weighted"):
            raise ConfigError(f"weighting_args.task_grads must be auto, own or weighted, not {self.cfg.task_grads!r}")

    @property
    def wants_features(self) -> bool:
        return self.cfg.jacobian == "features"

    def make(self) -> Callable:
        raise ConfigError(f"{type(self).__name__} has no aggregator")

    def to(self, device):
        super().to(device)
        try:
            self.aggregator = self.make()
        except ImportError as e:
            raise ConfigError(f"{type(self).__name__} needs an optional dependency ({e}); "
                              f"pip install 'torchjd[{self.extra}]'") from None
        if self.task_grads == "weighted" and not self.two_batches and not hasattr(self.aggregator, "weighting"):
            raise ConfigError(f"weighting_args.task_grads=weighted needs task weights; {type(self).__name__} "
                              "combines the gradients without any (use own)")
        return self

    def check(self, model):
        if not model.parameter_split()[0]:
            raise ConfigError(f"{type(self).__name__} aggregates gradients of shared parameters; "
                              f"this architecture shares none")

    def combine(self, losses):
        return self._stack(losses).sum()   # only for reporting; backward does the work

    def backward(self, losses, model, extra=None):
        # the losses themselves, not rows of a stack: a row's backward would pass through the
        # stack into every task's graph (zeros for the others, but the whole walk each time)
        L = self._ordered(losses)
        if getattr(self, "_split_of", None) is not model:   # walk the modules once, not every step
            shared, own = model.parameter_split()
            self._split = (shared, [p for ps in own.values() for p in ps])
            self._split_of = model
        shared, task_params = self._split
        weighted = self.task_grads == "weighted"
        if not weighted:   # each task parameter only reaches its own loss: the sum's gradient is its own
            total = sum(L) if extra is None else sum(L) + extra
            torch.autograd.backward(total, inputs=task_params, retain_graph=True)
        if self.wants_features:
            w = self._through_features(L, shared, extra, keep=weighted)
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
        return self.own_task_grads if self.cfg.task_grads == "auto" else self.cfg.task_grads

    own_task_grads = "own"

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
        J = self._jacobian(L, shared, retain=extra is not None or keep)
        w, update = self._aggregate(J, keep)
        self._set_shared(shared, update, extra, keep)
        return w

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

    def _through_features(self, L: list[torch.Tensor], shared: list[torch.Tensor], extra,
                          keep: bool = False) -> torch.Tensor | None:
        """Jacobian rows w.r.t. the shared features z (one backward of each loss, stopping at z),
        aggregated, then backpropagated once from z into the shared parameters: with MGDA's min-norm
        weights this is MGDA-UB (Sener & Koltun 2018), the weights of the gradients' upper bound."""
        z, self.features = self.features, None   # not kept alive into the next step
        # rows in fp32 even under bf16 autocast: the min-norm solve is ill-conditioned in 8 bits of mantissa
        rows = [torch.autograd.grad(loss, z, retain_graph=True)[0].flatten().float() for loss in L]
        w, update = self._aggregate(torch.stack(rows), keep)
        torch.autograd.backward(z, grad_tensors=update.view_as(z).to(z.dtype), inputs=shared,
                                retain_graph=extra is not None or keep)
        if extra is not None:
            for p, g in zip(shared, torch.autograd.grad(extra, shared, allow_unused=True, retain_graph=keep),
                            strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        return w


class TwoBatches(GradientAggregation):
    """Weights from two independent mini-batches (MoDo, SDMGrad): the run's step splits each task's
    batch into halves and hands their losses over (``halves``); the weighting reads A = J_1 J_2^T (not
    a Gramian), and the update is the weights times the halves' mean Jacobian — the gradient of
    sum_t lambda_t (L_t^1 + L_t^2) / 2, task-specific parameters included (the papers' update, and
    torchjd's example). Shared parameters only (``jacobian=params``)."""

    two_batches = True
    own_task_grads = "weighted"

    def __init__(self, tasks, cfg=None, seed=0):
        super().__init__(tasks, cfg, seed)
        if self.cfg.jacobian != "params":
            raise ConfigError(f"{type(self).__name__} takes the Jacobian of the shared parameters on two batches; "
                              "weighting_args.jacobian=features is not offered")

    def backward(self, losses, model, extra=None):
        halves, self.halves = self.halves, None
        if halves is None:
            raise ConfigError(f"{type(self).__name__} needs the losses of two half-batches (the run's train_step "
                              "gives them)")
        La, Lb = self._ordered(halves[0]), self._ordered(halves[1])
        shared, own = model.parameter_split()
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
        return super().weights() if last is None else {t: float(v) for t, v in zip(self.tasks, last, strict=True)}


def _aggregator(name: str, factory: Callable[[GradientAggregation], Callable], doc: str,
                extra: str = "full", base: type[GradientAggregation] | None = None, **attrs) -> None:
    cls = type(name, (base or GradientAggregation,), {"make": lambda self: factory(self), "__doc__": doc,
                                                      "extra": extra, **attrs})
    WEIGHTINGS.register(name, cls, help=doc.split("\n")[0])


def _agg(attr: str, **kw) -> Callable:
    def factory(self):
        import torchjd.aggregation as A

        return getattr(A, attr)(**{k: (v(self) if callable(v) else v) for k, v in kw.items()})
    return factory


_aggregator("pcgrad", _agg("PCGrad"), "PCGrad (Yu et al., NeurIPS 2020): project away conflicting components.")
_aggregator("mgda", _agg("MGDA"), "MGDA (Sener & Koltun, NeurIPS 2018): the min-norm point of the task gradients.")
_aggregator("cagrad", _agg("CAGrad", c=lambda self: self.cfg.cagrad_c),
            "CAGrad (Liu et al., NeurIPS 2021): best worst-case improvement near the mean gradient.", "cagrad")
_aggregator("nash_mtl", _agg("NashMTL", n_tasks=lambda self: len(self.tasks)),
            "Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution.\n\nAs the authors' code, the "
            "task-specific parameters get their task's gradient times its weight alpha_t "
            "(``weighting_args.task_grads=own``: unweighted, as before).", "nash-mtl", own_task_grads="weighted")
_aggregator("imtl_g", _agg("IMTLG"), "IMTL-G (Liu et al., ICLR 2021): equal projections on the update.")


def _aligned_mtl(self):
    import torchjd.aggregation as A

    if self.cfg.aligned_mtl_pref not in ("sum", "mean"):
        raise ConfigError(f"weighting_args.aligned_mtl_pref must be sum or mean, not {self.cfg.aligned_mtl_pref!r}")
    ones = torch.ones(len(self.tasks), device=self.device)
    return A.AlignedMTL(pref_vector=ones if self.cfg.aligned_mtl_pref == "sum" else ones / len(self.tasks))


_aggregator("aligned_mtl", _aligned_mtl,
            "Aligned-MTL (Senushkin et al., CVPR 2023): align the gradients' principal components.\n\n"
            "The update is the balanced gradients' sum, as Algorithm 1 (preference vector of ones; "
            "``weighting_args.aligned_mtl_pref=mean``: torchjd's default 1/T, an update T times smaller).")
_aggregator("upgrad", _agg("UPGrad"), "UPGrad (Quinton & Rey, 2024): project onto each gradient's dual cone.",
            "quadprog-projector")
_aggregator("dualproj", _agg("DualProj"), "DualProj (Quinton & Rey, 2024): mean projected onto the dual cone.",
            "quadprog-projector")
class OnActivations(GradientAggregation):
    """A method its paper applies to the gradients w.r.t. shared activations (GradDrop):
    ``weighting_args.graddrop_on=auto`` puts it on the shared features where every task reads one
    tensor (one input group under hard sharing, one process), else on the shared parameters, the only
    place tasks of different inputs share; ``features`` / ``params`` force one."""

    _on = "params"   # until check() has seen the model

    @property
    def wants_features(self) -> bool:
        return self.cfg.jacobian == "features" or self._on == "features"

    def check(self, model):
        super().check(model)
        on = self.cfg.graddrop_on
        if on not in ("auto", "features", "params"):
            raise ConfigError(f"weighting_args.graddrop_on must be auto, features or params, not {on!r}")
        one_tensor = (len(set(model.group_of.values())) == 1 and not self.world.active
                      and len({model.body_key(t) for t in model.task_names}) == 1)
        self._on = ("features" if one_tensor else "params") if on == "auto" else on


_aggregator("graddrop", _agg("GradDrop"),
            "GradDrop (Chen et al., NeurIPS 2020): sign-consistent dropout.\n\nOn the gradients w.r.t. the "
            "shared activations, as the paper, where the tasks share one feature tensor (per element, not "
            "summed over the batch); on the shared parameters otherwise (``weighting_args.graddrop_on``).",
            base=OnActivations)
_aggregator("gradvac", _agg("GradVac", beta=lambda self: self.cfg.gradvac_beta),
            "GradVac (Wang et al., ICLR 2021): raise each pair's cosine towards its running target.")
_aggregator("fairgrad", _agg("FairGrad", alpha=lambda self: self.cfg.fairgrad_alpha),
            "FairGrad (Ban & Ji, ICML 2024): alpha-fair allocation of the update among tasks.", "fairgrad")
_aggregator("excess_mtl", _agg("ExcessMTL", robust_step_size=lambda self: self.cfg.excess_mtl_step),
            "ExcessMTL (He et al., ICML 2024): weights by each task's estimated excess risk.")
_aggregator("config", _agg("ConFIG"),
            "ConFIG (Liu et al., ICLR 2025): the conflict-free direction with equal cosine to every gradient.")


def _cr_mogm(self):
    import torchjd.aggregation as A

    return A.GramianWeightedAggregator(A.CRMOGMWeighting(A.MGDAWeighting(), alpha=self.cfg.crmogm_alpha))


_aggregator("cr_mogm", _cr_mogm,
            "CR-MOGM (Zhou et al., NeurIPS 2022): MGDA's weights smoothed by an EMA across steps.")
_aggregator("modo", _agg("MoDoWeighting", gamma=lambda self: self.cfg.modo_gamma, rho=lambda self: self.cfg.modo_rho),
            "MoDo (Chen et al., JMLR 2024): weights by a projected step on J_1 J_2^T of two independent batches.",
            base=TwoBatches)
_aggregator("sdmgrad", _agg("SDMGradWeighting", lambda_=lambda self: self.cfg.sdmgrad_lambda),
            "SDMGrad (Xiao et al., NeurIPS 2023): direction-oriented weights from two independent batches.",
            base=TwoBatches)
