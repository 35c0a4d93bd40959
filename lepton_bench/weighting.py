"""Weightings turn the per-task losses of a step into the one scalar that is backpropagated."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from .registry import Registry


class Weighting(ABC):
    """Base class. ``combine`` may keep state (loss histories, learned weights)."""

    def __init__(self, tasks: Sequence[str]):
        self.tasks = list(tasks)

    @abstractmethod
    def combine(self, losses: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """The scalar to backpropagate."""

    def weights(self) -> dict[str, float]:
        """The current task weights, for records (host values; call off the hot path)."""
        return {t: 1.0 for t in self.tasks}


WEIGHTINGS: Registry[type[Weighting]] = Registry("weighting")


@WEIGHTINGS.register("ew")
class EqualWeighting(Weighting):
    """Equal weights: the plain sum of task losses, so each task's gradient has its STL scale."""

    def combine(self, losses: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        return torch.stack(list(losses.values())).sum()
