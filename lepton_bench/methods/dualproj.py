"""DualProj (Quinton & Rey, 2024): the mean projected onto the dual cone, a torchjd aggregator."""

from __future__ import annotations

from .base import WEIGHTINGS
from .gradient import GradientAggregation, torchjd_aggregator


@WEIGHTINGS.register("dualproj")
class DualProj(GradientAggregation):
    """DualProj (Quinton & Rey, 2024): mean projected onto the dual cone."""

    extra = "quadprog-projector"

    def make(self):
        return torchjd_aggregator("DualProj")
