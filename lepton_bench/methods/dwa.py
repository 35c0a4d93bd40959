"""DWA: Dynamic Weight Average (Liu et al., CVPR 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import WEIGHTINGS, Needs, Weighting


@dataclass
class DWAArgs:
    dwa_temperature: float = 2.0  # softmax temperature T
    dwa_window: int = 50          # steps per loss average (the paper's "epoch")


@WEIGHTINGS.register("dwa")
class DynamicWeightAverage(Weighting):
    """Dynamic Weight Average (Liu et al., CVPR 2019): w_t = T softmax(r_t / temp), with r_t the
    ratio of task t's last two average losses. The paper averages per epoch; here per
    ``dwa_window`` steps. Weights are 1 until two windows have passed. No host syncs."""

    Args = DWAArgs
    needs = Needs(every_task=True, single_process=True)

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
        if self._count == self.args.dwa_window:   # the window closes: its average sets the next window's weights
            self.push(self._sum / self._count)
            self._sum.zero_()
            self._count = 0
        return total

    def push(self, average: torch.Tensor) -> None:
        """Add one window's average losses and recompute the weights."""
        self.history = [*self.history[-1:], average]
        if len(self.history) == 2:
            r = self.history[1] / self.history[0]
            self.w = len(self.tasks) * torch.softmax(r / self.args.dwa_temperature, dim=0)

    def weights(self):
        return self._per_task(self.w)
