"""Samplers decide which tasks get a batch at each optimizer step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from .registry import Registry


class Sampler(ABC):
    every_task_every_step = False  # gradient-aggregation methods need True

    def __init__(self, tasks: Sequence[str], seed: int = 0):
        self.tasks = list(tasks)
        self.seed = seed

    @abstractmethod
    def tasks_at(self, step: int) -> list[str]:
        """The tasks that get a batch at ``step``."""


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


@SAMPLERS.register("all")
class AllTasks(Sampler):
    """One batch of every task at every step: each task sees steps x batch_size examples."""

    every_task_every_step = True

    def tasks_at(self, step: int) -> list[str]:
        return self.tasks
