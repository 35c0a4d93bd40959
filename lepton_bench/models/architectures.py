"""Architectures decide how the trunk is shared between tasks.

``single`` is the single-task baseline; ``hard`` shares one trunk between all tasks.
Both are the same ``MultiTaskModel``: only the task -> trunk mapping differs, which
is what makes the STL/MTL comparison fair.
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
from .stems import ConvStem, EmbeddingStem
from .trunk import Trunk


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
    image_size: int = 32


def build_stem(io: TaskIO, cfg: ModelConfig) -> nn.Module:
    if io.input == "image":
        return ConvStem(cfg.dim, cfg.image_widths, io.image_size, dropout=cfg.dropout)
    if io.input == "text":
        shapes = io.num_shapes if cfg.case_feature else 0
        return EmbeddingStem(cfg.dim, io.vocab_size, io.max_len, shapes, dropout=cfg.dropout)
    raise ConfigError(f"task {io.name}: no stem for input type {io.input!r}")


def build_head(io: TaskIO, cfg: ModelConfig) -> nn.Module:
    head = {"class": ClassificationHead, "tag": TaggingHead}.get(io.output)
    if head is None:
        raise ConfigError(f"task {io.name}: no head for output type {io.output!r}")
    return head(cfg.dim, io.num_outputs)


class MultiTaskModel(nn.Module):
    """``stems[t] -> trunks[trunk_of[t]] -> heads[t]`` for every task t."""

    def __init__(self, tasks: Sequence[TaskIO], cfg: ModelConfig, trunk_of: dict[str, str]):
        super().__init__()
        self.task_names = [t.name for t in tasks]
        self.trunk_of = dict(trunk_of)
        self.stems = nn.ModuleDict({t.name: build_stem(t, cfg) for t in tasks})
        self.trunks = nn.ModuleDict({
            k: Trunk(cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.drop_path)
            for k in dict.fromkeys(trunk_of.values())})
        self.heads = nn.ModuleDict({t.name: build_head(t, cfg) for t in tasks})

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x, mask = self.stems[task](batch)
        x = self.trunks[self.trunk_of[task]](x, mask)
        return self.heads[task](x, mask)

    def task_modules(self, task: str) -> list[nn.Module]:
        """Every module that task's forward pass goes through."""
        return [self.stems[task], self.trunks[self.trunk_of[task]], self.heads[task]]

    def extra_loss(self) -> torch.Tensor | None:
        """A regulariser added to the weighted task losses (none for plain sharing)."""
        return None

    def parameter_split(self) -> tuple[list[nn.Parameter], dict[str, list[nn.Parameter]]]:
        """(shared parameters, {task: parameters only that task uses})."""
        users: dict[int, set[str]] = {}
        by_id: dict[int, nn.Parameter] = {}
        for task in self.task_names:
            for module in self.task_modules(task):
                for p in module.parameters():
                    users.setdefault(id(p), set()).add(task)
                    by_id[id(p)] = p
        shared = [by_id[i] for i, u in users.items() if len(u) > 1]
        own = {t: [by_id[i] for i, u in users.items() if u == {t}] for t in self.task_names}
        return shared, own

    def parameter_counts(self) -> dict[str, int]:
        shared, own = self.parameter_split()
        counts = {"total": sum(p.numel() for p in self.parameters()),
                  "shared": sum(p.numel() for p in shared)}
        counts.update({f"task.{t}": sum(p.numel() for p in ps) for t, ps in own.items()})
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


def build_model(architecture: str, tasks: Sequence[TaskIO], cfg: ModelConfig) -> MultiTaskModel:
    return ARCHITECTURES.get(architecture)(tasks, cfg)
