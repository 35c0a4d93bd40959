"""RLW: Random Loss Weighting (Lin et al., TMLR 2022)."""

from __future__ import annotations

import torch

from .base import WEIGHTINGS, Weighting


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
        return self._per_task(self.w)
