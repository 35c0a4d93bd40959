"""GLS: Geometric Loss Strategy (Chennupati et al., CVPR-W 2019)."""

from __future__ import annotations

import torch

from .base import WEIGHTINGS, Needs, Weighting


@WEIGHTINGS.register("gls")
class GeometricLossStrategy(Weighting):
    """Geometric Loss Strategy (Chennupati et al., CVPR-W 2019): the geometric mean of the task
    losses, (prod_t L_t)^(1/T), which is invariant to each loss's scale."""

    needs = Needs(every_task=True)

    def combine(self, losses):
        return torch.exp(torch.log(self._stack(losses)).mean())
