"""Architectures decide how the trunk is shared between tasks.

``single`` is the single-task baseline; ``hard`` shares one trunk between all tasks.
Both are the same ``MultiTaskModel``: only the task -> trunk mapping differs, which
is what makes the STL/MTL comparison fair.

Tasks of one *input group* (``TaskIO.group``: the same dataset and input column, e.g. CoNLL-2003
NER, POS and chunking) share their stem, the encoder of that input, and ``forward_group`` runs it
once for all of them; each head reads the same features, and under hard sharing the trunk runs once
too. A task alone in its group is exactly the model of before (its stem keyed by its own name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ..registry import Registry
from .heads import ClassificationHead, TaggingHead
from .stems import build_stem_module, stem_of
from .trunk import Adapter, build_trunk


@dataclass(frozen=True)
class TaskIO:
    """What a task feeds the model and wants back; built by ``train`` from the data."""

    name: str
    input: str            # "image" (uint8 B,3,H,W) or "text" (word ids B,L)
    output: str           # "class" (B,C) or "tag" (B,L,C)
    num_outputs: int
    vocab_size: int = 0
    max_len: int = 0
    num_shapes: int = 0   # word-shape ids (0: none)
    num_chars: int = 0    # character ids (0: the data has no characters)
    image_size: int = 32
    group: str = ""       # input group (tasks reading one input share a stem); "": the task alone

    @property
    def input_group(self) -> str:
        return self.group or self.name


def build_stem(io: TaskIO, cfg: ModelConfig) -> nn.Module:
    """The task's stem: ``model.stems[task]`` if set, else the default for its input type."""
    return build_stem_module(stem_of(io.name, io.input, cfg), io, cfg)


def build_head(io: TaskIO, cfg: ModelConfig) -> nn.Module:
    head = {"class": ClassificationHead, "tag": TaggingHead}.get(io.output)
    if head is None:
        raise ConfigError(f"task {io.name}: no head for output type {io.output!r}")
    return head(cfg.dim, io.num_outputs)


class MultiTaskModel(nn.Module):
    """``stems[group_of[t]] -> trunks[trunk_of[t]] -> heads[t]`` for every task t."""

    def __init__(self, tasks: Sequence[TaskIO], cfg: ModelConfig, trunk_of: dict[str, str]):
        super().__init__()
        self.task_names = [t.name for t in tasks]
        self.feature_dim = cfg.dim   # what every head reads (a method's router sizes itself by it: LDC-MTL)
        self.trunk_of = dict(trunk_of)
        self.group_of = {t.name: t.input_group for t in tasks}
        first = {}   # the first task of each group builds its stem (their inputs are the same)
        for t in tasks:
            first.setdefault(t.input_group, t)
        self.stems = nn.ModuleDict({g: build_stem(t, cfg) for g, t in first.items()})
        if cfg.freeze_pretrained and not any(getattr(m, "frozen", False) for m in self.stems.values()):
            raise ConfigError("model.freeze_pretrained freezes pretrained hf: stems, and no task here has one "
                              "(model.stems.<task>=hf:<model id>)")
        self.trunks = nn.ModuleDict({k: build_trunk(cfg) for k in dict.fromkeys(trunk_of.values())})
        self.heads = nn.ModuleDict({t.name: build_head(t, cfg) for t in tasks})

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x, mask = self.stems[self.group_of[task]](batch)
        return self.heads[task](self.body(task, x, mask), mask)

    def forward_group(self, tasks: Sequence[str], batch: dict[str, torch.Tensor],
                      features: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Logits of several tasks of one input group on the batch they share: the stem runs once,
        a trunk once per ``body_key`` (once in all under hard sharing), a head per task. ``features``,
        when given, receives each body output (the features the heads read), by body key."""
        x, mask = self.stems[self.group_of[tasks[0]]](batch)
        bodies = self.bodies(tasks, x, mask)
        if features is not None:
            features.update(bodies)
        return {t: self.heads[t](bodies[self.body_key(t)], mask) for t in tasks}

    def body(self, task: str, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Stem tokens -> trunk tokens; architectures that share differently override this."""
        return self.trunks[self.trunk_of[task]](x, mask)

    def bodies(self, tasks: Sequence[str], x: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``{body_key: body output}`` of tasks of one input group on their shared stem tokens: one
        ``body`` call per key. Architectures whose tasks' paths depend on each other (cross-stitch,
        MTAN, PLE) override this to compute the group's paths together, once."""
        out: dict[str, torch.Tensor] = {}
        for t in tasks:
            key = self.body_key(t)
            if key not in out:
                out[key] = self.body(t, x, mask)
        return out

    def body_key(self, task: str) -> str:
        """Tasks with one key get the same ``body`` output on the same input (one trunk pass)."""
        return self.trunk_of[task]

    def task_modules(self, task: str) -> list[nn.Module]:
        """Every module that task's forward pass goes through."""
        return [self.stems[self.group_of[task]], self.trunks[self.trunk_of[task]], self.heads[task]]

    def extra_loss(self) -> torch.Tensor | None:
        """A regulariser added to the weighted task losses (none for plain sharing)."""
        return None

    def parameter_split(self, trained: bool = True) -> tuple[list[nn.Parameter], dict[str, list[nn.Parameter]]]:
        """(shared parameters, {task: parameters only that task uses}): those that train (a frozen
        encoder's are not a method's to aggregate), or with ``trained=False`` every one (to serve)."""
        users: dict[int, set[str]] = {}
        by_id: dict[int, nn.Parameter] = {}
        for task in self.task_names:
            for module in self.task_modules(task):
                for p in module.parameters():
                    if trained and not p.requires_grad:
                        continue
                    users.setdefault(id(p), set()).add(task)
                    by_id[id(p)] = p
        shared = [by_id[i] for i, u in users.items() if len(u) > 1]
        own = {t: [by_id[i] for i, u in users.items() if u == {t}] for t in self.task_names}
        return shared, own

    def parameter_counts(self) -> dict[str, int]:
        shared, own = self.parameter_split(trained=False)
        counts = {"total": sum(p.numel() for p in self.parameters()),
                  "shared": sum(p.numel() for p in shared)}
        counts.update({f"task.{t}": sum(p.numel() for p in ps) for t, ps in own.items()})
        trained = sum(p.numel() for p in self.parameters() if p.requires_grad)
        if trained < counts["total"]:   # a frozen encoder (model.freeze_pretrained): what the optimizer trains
            counts["trained"] = trained
        return counts


ARCHITECTURES: Registry[Callable[[Sequence[TaskIO], ModelConfig], MultiTaskModel]] = Registry("architecture")


@ARCHITECTURES.register("single")
def single(tasks: Sequence[TaskIO], cfg: ModelConfig) -> MultiTaskModel:
    """Single-task baseline (STL): one stem, one trunk, one head."""
    if len(tasks) != 1:
        raise ConfigError(f"architecture 'single' trains exactly one task, got {len(tasks)}: "
                          f"{', '.join(t.name for t in tasks)}")
    return MultiTaskModel(tasks, cfg, {tasks[0].name: tasks[0].name})


@ARCHITECTURES.register("hard")
def hard(tasks: Sequence[TaskIO], cfg: ModelConfig) -> MultiTaskModel:
    """Hard parameter sharing: one trunk for all tasks, own stem and head per task."""
    return MultiTaskModel(tasks, cfg, {t.name: "shared" for t in tasks})


class SoftL2Model(MultiTaskModel):
    """One trunk per task, each pulled towards the trunks' mean by an L2 penalty
    (Duong et al., ACL 2015; Yang & Hospedales, 2017). Nothing is shared, so parameters are
    all task-specific; the penalty is ``model.soft_l2`` x sum of squared distances."""

    def __init__(self, tasks, cfg):
        super().__init__(tasks, cfg, {t.name: t.name for t in tasks})
        self.strength = cfg.soft_l2

    def extra_loss(self):
        if len(self.trunks) < 2 or self.strength == 0:
            return None
        trunks = list(self.trunks.values())
        total = 0.0
        for params in zip(*(t.parameters() for t in trunks), strict=True):
            stacked = torch.stack(params)
            total = total + ((stacked - stacked.mean(0, keepdim=True)) ** 2).sum()
        return self.strength * total


class MMoEModel(MultiTaskModel):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): ``model.experts`` shared expert
    trunks; each task mixes their outputs per token with its own softmax gate over the stem's
    tokens. Costs ``experts`` times a hard-shared trunk."""

    def __init__(self, tasks, cfg):
        super().__init__(tasks, cfg, {t.name: "expert0" for t in tasks})
        self.trunks = nn.ModuleDict({f"expert{i}": build_trunk(cfg) for i in range(cfg.experts)})
        self.gates = nn.ModuleDict({t.name: nn.Linear(cfg.dim, cfg.experts) for t in tasks})

    def body(self, task, x, mask):
        g = torch.softmax(self.gates[task](x), dim=-1)                      # (B, N, E)
        outs = torch.stack([e(x, mask) for e in self.trunks.values()], -1)  # (B, N, d, E)
        return (outs * g.unsqueeze(-2)).sum(-1)

    def body_key(self, task):
        return task   # each task its own mixture of the experts

    def task_modules(self, task):
        return [self.stems[self.group_of[task]], *self.trunks.values(), self.gates[task], self.heads[task]]


class AdapterModel(MultiTaskModel):
    """One shared trunk with a per-task bottleneck adapter after every block (Houlsby et al.,
    ICML 2019; Rebuffi et al., 2017): ``model.adapter_dim`` wide, starting as the identity."""

    def __init__(self, tasks, cfg):
        super().__init__(tasks, cfg, {t.name: "shared" for t in tasks})
        self.adapters = nn.ModuleDict({
            t.name: nn.ModuleList(Adapter(cfg.dim, cfg.adapter_dim) for _ in range(cfg.depth))
            for t in tasks})

    def body(self, task, x, mask):
        return self.trunks["shared"](x, mask, self.adapters[task])

    def body_key(self, task):
        return task   # each task its own adapters

    def task_modules(self, task):
        return [*super().task_modules(task), self.adapters[task]]


@ARCHITECTURES.register("soft_l2")
def soft_l2(tasks, cfg):
    """Soft sharing: a trunk per task, tied to the others by an L2 penalty."""
    return SoftL2Model(tasks, cfg)


@ARCHITECTURES.register("mmoe")
def mmoe(tasks, cfg):
    """Multi-gate mixture of experts: shared expert trunks, a softmax gate per task."""
    return MMoEModel(tasks, cfg)


@ARCHITECTURES.register("adapters")
def adapters(tasks, cfg):
    """Shared trunk + per-task bottleneck adapters after each block."""
    return AdapterModel(tasks, cfg)


def build_model(architecture: str, tasks: Sequence[TaskIO], cfg: ModelConfig) -> MultiTaskModel:
    return ARCHITECTURES.get(architecture)(tasks, cfg)


def needs_one_input(architecture: str) -> bool:
    """Whether an architecture mixes its tasks' activations on one input (cross_stitch, mtan): it
    then trains only tasks of one input group (its factory's ``one_input_group``)."""
    return bool(getattr(ARCHITECTURES.get(architecture), "one_input_group", False))
