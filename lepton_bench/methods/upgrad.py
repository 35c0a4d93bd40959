"""UPGrad (Quinton & Rey, 2024): projections onto the dual cone, a torchjd aggregator."""

from __future__ import annotations

from .base import WEIGHTINGS
from .gradient import GradientAggregation, torchjd_aggregator


@WEIGHTINGS.register("upgrad")
class UPGrad(GradientAggregation):
    """UPGrad (Quinton & Rey, 2024): project onto each gradient's dual cone."""

    extra = "quadprog-projector"

    def make(self):
        return torchjd_aggregator("UPGrad")
