"""What a method is: the base class, what it declares, and what one training step hands it.

A method turns the task losses of a step into parameter gradients (``backward``). It receives a
``Step`` and asks it for what it needs — the task losses, the shared features, the losses of two
half-batches, a look-ahead on a second batch, the losses after the update — so the training loop
names no method. What must hold before training starts is declared in ``needs`` and checked in one
place (``check_needs``); its hyper-parameters are a small dataclass, ``Args``, declared beside it
(``weighting_args.<field>`` on the command line, validated against it by ``resolve_args``).
A method knows losses and gradients, never data.
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, get_type_hints

import torch
from torch import nn

from ..config import coerce
from ..errors import ConfigError
from ..registry import Registry
from ..run.distributed import World

Batches = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Needs:
    """What a method requires of the run, checked before training (``check_needs``)."""

    every_task: bool = False      # every task's loss at every step (sampler 'all')
    single_process: bool = False  # keeps state from this process's own losses or gradients, which torchrun
                                  # processes would not share: refused there
    one_feature_tensor: bool = False   # the gradients w.r.t. one shared feature tensor that every task reads
                                  # (one input group under hard sharing, one process)
    second_stream: bool = False   # a second, independent draw of training batches each step (Auto-Lambda)
    one_output_kind: bool = False   # every head's last layer reads one representation: tasks of one output type
                                    # (all classification or all tagging; BayesAgg-MTL), refused by its check()


@dataclass
class Lookahead:
    """What a look-ahead method needs beyond the step's losses (``Step.lookahead``)."""

    losses_of: Callable[[Batches], dict[str, torch.Tensor]]   # task losses at the current parameters
    batches: Batches          # this step's training batches
    meta_batches: Batches     # a second, independent draw of training batches (its own stream)
    lr: float                 # the step's learning rate (the virtual step's size)
    primary: list[str]        # the tasks the look-ahead scores: the main ones (not the auxiliary)
    weight_decay: dict[int, float] = field(default_factory=dict)   # id(parameter) -> its decoupled decay


def optimizer_decay(opt: torch.optim.Optimizer | None) -> dict[int, float]:
    """Each parameter's weight decay in ``opt`` (by id), for a virtual step that matches the real one."""
    if opt is None:
        return {}
    return {id(p): g.get("weight_decay", 0.0) for g in opt.param_groups for p in g["params"]}


class Step(Protocol):
    """One training step as a method sees it. Each item is computed when first asked for (and once)."""

    model: nn.Module

    def losses(self) -> dict[str, torch.Tensor]:
        """Each task's loss on its batch, with its graph (with ``half_losses``: the halves' mean)."""

    def extra(self) -> torch.Tensor | None:
        """The model's own regulariser (soft sharing, gate penalties), after the forward pass: added to
        the update, not weighed."""

    def features(self) -> torch.Tensor:
        """The shared features every task read this step (needs ``one_feature_tensor``)."""

    def feature_tensors(self) -> list[torch.Tensor]:
        """Every feature tensor the heads read this step (one per input group under hard sharing)."""

    def half_losses(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The task losses of each half of every task's batch: two independent estimates (MoDo, SDMGrad).
        Asked for first, they replace the whole batch's forward pass."""

    def lookahead(self) -> Lookahead:
        """A way to score a virtual update on a second batch (needs ``second_stream``)."""

    def losses_after(self) -> dict[str, torch.Tensor]:
        """The same batches' losses after the optimizer step, without a graph (in ``after_step``)."""

    def targets(self) -> dict[str, torch.Tensor]:
        """Each task's label ids on its batch, as its loss reads them (``IGNORE`` where a position has none)."""


@dataclass
class GivenStep:
    """A ``Step`` of values given up front: for calling a method outside a run (tests, notebooks). The
    losses may be given as a function instead, called when the method first asks (so the forward pass runs
    inside the method's ``backward``, as in a run: hooks on the model see it), and the extra term and the
    features of that forward pass too."""

    given_losses: dict[str, torch.Tensor] | Callable[[], dict[str, torch.Tensor]]
    model: nn.Module
    given_extra: torch.Tensor | Callable[[], torch.Tensor | None] | None = None
    given_features: torch.Tensor | list[torch.Tensor] | Callable[[], torch.Tensor] | None = None
    given_halves: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
    given_lookahead: Lookahead | None = None
    given_after: dict[str, torch.Tensor] | None = None
    given_targets: dict[str, torch.Tensor] | None = None

    def losses(self):
        if callable(self.given_losses):
            self.given_losses = self.given_losses()
        return self.given_losses

    def extra(self):
        if callable(self.given_extra):
            self.losses()   # the regulariser of this step's forward pass
            self.given_extra = self.given_extra()
        return self.given_extra

    def targets(self):
        return _given(self.given_targets, "targets")

    def _features(self):
        if callable(self.given_features):
            self.losses()   # the features of this step's forward pass
            self.given_features = self.given_features()
        return _given(self.given_features, "features")

    def features(self):
        given = self._features()
        return given[0] if isinstance(given, list) else given

    def feature_tensors(self):
        given = self._features()
        return list(given) if isinstance(given, list) else [given]

    def half_losses(self):
        return _given(self.given_halves, "halves")

    def lookahead(self):
        return _given(self.given_lookahead, "lookahead")

    def losses_after(self):
        return self.given_after if self.given_after is not None else \
            {n: v.detach() for n, v in self.losses().items()}


def _given(value, what: str):
    if value is None:
        raise ConfigError(f"this method asks the step for its {what}; pass given_{what} to GivenStep")
    return value


@dataclass
class NoArgs:
    """A method without hyper-parameters."""


class Weighting(ABC):
    """Base class of every method: ``backward`` fills the ``.grad`` of the model's parameters.

    A loss weighting writes ``combine`` (the scalar to backpropagate); a method on the gradients
    overrides ``backward``. Declare ``needs`` and ``Args`` on the class; ``self.args`` is the run's."""

    needs: ClassVar[Needs] = Needs()
    Args: ClassVar[type] = NoArgs
    revision: ClassVar[int] = 1   # count up when the method's update changes by design (RunConfig.method_revision:
                                  # its runs get new ids; 1 stays out of the hash, so old ids hold)
    world = World()               # the torchrun world, set by ``setup.prepare``
    main: list[str] | None = None  # the run's main tasks (not its auxiliary ones), set by ``setup.prepare``;
                                  # None: every task

    def __init__(self, tasks: Sequence[str], args: Any = None, seed: int = 0):
        self.tasks = list(tasks)
        self.args = args if args is not None else self.Args()
        self.seed = seed
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> Weighting:
        self.device = device
        return self

    def parameters(self) -> list[torch.Tensor]:
        """Learnable method parameters trained by the run's optimizer (e.g. UW's log-variances)."""
        return []

    def check(self, model: nn.Module) -> None:
        """Refuse a model this method cannot work on (e.g. no shared parameters)."""

    def backward(self, step: Step) -> torch.Tensor | None:
        """Fill the gradients; return the combined loss (detached, on the device; the run checks
        it is finite without a host sync), or None for a method that combines no loss."""
        total = self.combine(step.losses())
        extra = step.extra()
        (total if extra is None else total + extra).backward()
        return total.detach()

    @abstractmethod
    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar to backpropagate, from the losses of the tasks that ran this step."""

    def after_step(self, step: Step) -> None:
        """Called after the optimizer step (``step.losses_after()`` re-computes the losses)."""

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

    def _per_task(self, values) -> dict[str, float]:
        """Host floats, one per task in task order (for ``weights``)."""
        return {t: float(v) for t, v in zip(self.tasks, values, strict=True)}


WEIGHTINGS: Registry[type[Weighting]] = Registry("weighting")


def resolve_args(weighting: str, given: dict[str, Any]) -> Any:
    """The method's ``Args`` from the run's ``weighting_args``: each key one of its declared fields
    (else an error naming them), each value coerced to the field's type."""
    cls = WEIGHTINGS.get(weighting).Args
    declared = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    values = {}
    for key, value in given.items():
        if key not in declared:
            close = difflib.get_close_matches(key, declared, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = f"its settings: {', '.join(declared)}" if declared else "it declares none"
            raise ConfigError(f"unknown setting weighting_args.{key} of weighting {weighting}{hint} ({known})")
        values[key] = coerce(value, hints[key], f"weighting_args.{key}")
    return cls(**values)


def check_needs(weighting: str, needs: Needs, *, every_task_every_step: bool, sampler: str, world: World,
                one_tensor: bool | None = None, why_not_one: str = "") -> None:
    """Refuse a run that cannot give the method what it declared (``one_tensor`` None: not known yet,
    before the model is built)."""
    if needs.every_task and not every_task_every_step:
        raise ConfigError(f"weighting {weighting} needs every task's loss at every step; "
                          f"sampler {sampler} gives one task per step (use sampler 'all')")
    if needs.single_process and world.active:
        raise ConfigError(f"weighting {weighting} keeps state from each process's own losses, which "
                          f"{world.size} torchrun processes would not share; run it in one process")
    if needs.one_feature_tensor and one_tensor is False:
        raise ConfigError(f"weighting {weighting} on the shared features (weighting_args.jacobian=features) needs "
                          f"one feature tensor that every task reads: the tasks of one input group under hard "
                          f"sharing, in one process (this run: {why_not_one}); use jacobian=params")
