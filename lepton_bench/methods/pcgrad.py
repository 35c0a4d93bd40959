"""PCGrad (Yu et al., NeurIPS 2020): gradient surgery, a torchjd aggregator."""

from __future__ import annotations

from .base import WEIGHTINGS
from .gradient import GradientAggregation, torchjd_aggregator


@WEIGHTINGS.register("pcgrad")
class PCGrad(GradientAggregation):
    """PCGrad (Yu et al., NeurIPS 2020): project away conflicting components."""

    def make(self):
        return torchjd_aggregator("PCGrad")
