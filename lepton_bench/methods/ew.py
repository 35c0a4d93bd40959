"""EW: equal weights, the plain sum of the task losses."""

from __future__ import annotations

import torch

from .base import WEIGHTINGS, Weighting


@WEIGHTINGS.register("ew")
class EqualWeighting(Weighting):
    """Equal weights: the plain sum of task losses, so each task's gradient keeps its STL scale."""

    def combine(self, losses):
        return torch.stack(list(losses.values())).sum()
