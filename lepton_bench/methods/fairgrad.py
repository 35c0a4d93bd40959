"""FairGrad (Ban & Ji, ICML 2024): alpha-fair allocation of the update, a torchjd aggregator."""

from __future__ import annotations

from dataclasses import dataclass

from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class FairGradArgs(GradientArgs):
    fairgrad_alpha: float = 1.0   # alpha of alpha-fairness (1: proportional fairness)


@WEIGHTINGS.register("fairgrad")
class FairGrad(GradientAggregation):
    """FairGrad (Ban & Ji, ICML 2024): alpha-fair allocation of the update among tasks."""

    Args = FairGradArgs
    extra = "fairgrad"

    def make(self):
        return torchjd_aggregator("FairGrad", alpha=self.args.fairgrad_alpha)
