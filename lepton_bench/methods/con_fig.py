"""ConFIG (Liu et al., ICLR 2025): conflict-free inverse gradients, a torchjd aggregator."""

from __future__ import annotations

from .base import WEIGHTINGS
from .gradient import GradientAggregation, torchjd_aggregator


@WEIGHTINGS.register("config")
class ConFIG(GradientAggregation):
    """ConFIG (Liu et al., ICLR 2025): the conflict-free direction with equal cosine to every gradient."""

    def make(self):
        return torchjd_aggregator("ConFIG")
