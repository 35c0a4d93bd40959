"""MGDA and MGDA-UB (Sener & Koltun, NeurIPS 2018): the min-norm point of the task gradients."""

from __future__ import annotations

from .base import WEIGHTINGS
from .gradient import GradientAggregation, torchjd_aggregator


@WEIGHTINGS.register("mgda")
class MGDA(GradientAggregation):
    """MGDA (Sener & Koltun, NeurIPS 2018): the min-norm point of the task gradients.

    With ``weighting_args.jacobian=features``: MGDA-UB, the weights of the gradients w.r.t. the shared
    features (the upper bound of the paper's section 3.3), for one input group under hard sharing."""

    def make(self):
        return torchjd_aggregator("MGDA")
