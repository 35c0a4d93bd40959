"""CAGrad (Liu et al., NeurIPS 2021): conflict-averse gradient descent, a torchjd aggregator."""

from __future__ import annotations

from dataclasses import dataclass

from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class CAGradArgs(GradientArgs):
    cagrad_c: float = 0.5         # radius c of the conflict-averse ball around the mean gradient


@WEIGHTINGS.register("cagrad")
class CAGrad(GradientAggregation):
    """CAGrad (Liu et al., NeurIPS 2021): best worst-case improvement near the mean gradient."""

    Args = CAGradArgs
    extra = "cagrad"

    def make(self):
        return torchjd_aggregator("CAGrad", c=self.args.cagrad_c)
