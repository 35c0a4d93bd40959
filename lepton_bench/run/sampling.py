"""Samplers decide which tasks get a batch at each optimizer step.

``all`` gives every task a batch every step (gradient methods need it). The others pick one
task per step; a run with them takes T times as many optimizer steps, so that the number of
batches trained on equals that of ``all`` (each task sees ``steps`` batches on average).

A sampler is a ``Sampler`` subclass registered in ``SAMPLERS``. ``train.prepare`` builds it once
per run as ``cls(tasks, sizes, total_steps, seed, temperature)``; ``train.run`` then asks
``tasks_at(step)`` before each step and, at each ``train.log_every`` step, hands it the tasks'
logged losses through ``observe(step, losses)`` before the next step is drawn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ..registry import Registry


class Sampler(ABC):
    every_task_every_step = False

    def __init__(self, tasks: Sequence[str], sizes: dict[str, int] | None = None, total_steps: int = 1,
                 seed: int = 0, temperature: float = 2.0):
        self.tasks = list(tasks)
        self.sizes = np.array([float((sizes or {}).get(t, 1)) for t in self.tasks])
        self.total_steps = max(1, total_steps)
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def tasks_at(self, step: int) -> list[str]:
        """The tasks that get a batch at ``step`` (1-based)."""

    def observe(self, step: int, losses: dict[str, float]) -> None:
        """Called by ``train.run`` after step ``step`` when it logs (every ``train.log_every``
        steps and at the last), before step ``step + 1`` is drawn: ``losses`` holds each task's mean
        training loss over the steps since the previous call, for the tasks trained in them (under
        torchrun: the mean over the processes, the same on each, so they keep drawing alike).
        These are the host-side floats the log already read: no extra device sync. Default: ignored."""

    def probabilities(self, step: int) -> np.ndarray:
        """Probability of each task at ``step`` (uniform unless a sampler says otherwise)."""
        return np.full(len(self.tasks), 1 / len(self.tasks))

    def _draw(self, step: int) -> list[str]:
        return [self.tasks[self.rng.choice(len(self.tasks), p=self.probabilities(step))]]


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


@SAMPLERS.register("all")
class AllTasks(Sampler):
    """One batch of every task at every step: each task sees steps x batch_size examples."""

    every_task_every_step = True

    def tasks_at(self, step):
        return self.tasks


@SAMPLERS.register("round_robin")
class RoundRobin(Sampler):
    """One task per step, in turn: every task gets the same number of batches."""

    def tasks_at(self, step):
        return [self.tasks[(step - 1) % len(self.tasks)]]


@SAMPLERS.register("proportional")
class Proportional(Sampler):
    """One task per step, drawn with p proportional to its train-set size n."""

    def probabilities(self, step):
        return self.sizes / self.sizes.sum()

    def tasks_at(self, step):
        return self._draw(step)


@SAMPLERS.register("temperature")
class Temperature(Sampler):
    """One task per step, p proportional to n^(1/tau) (tau = sampler_temperature; 1 is
    proportional, large tau is uniform)."""

    def probabilities(self, step):
        p = self.sizes ** (1 / self.temperature)
        return p / p.sum()

    def tasks_at(self, step):
        return self._draw(step)


@SAMPLERS.register("annealed")
class Annealed(Sampler):
    """Annealed sampling (Stickland & Murray, ICML 2019): p proportional to n^alpha with alpha
    going from 1 (proportional) to 0.2 (near uniform) over the run."""

    def probabilities(self, step):
        alpha = 1 - 0.8 * (step - 1) / max(1, self.total_steps - 1)
        p = self.sizes ** alpha
        return p / p.sum()

    def tasks_at(self, step):
        return self._draw(step)
