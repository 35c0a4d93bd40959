"""GradVac (Wang et al., ICLR 2021): gradient vaccine, a torchjd aggregator."""

from __future__ import annotations

from dataclasses import dataclass

from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class GradVacArgs(GradientArgs):
    gradvac_beta: float = 0.5     # EMA rate of the target cosines (torchjd's and LibMTL's default)


@WEIGHTINGS.register("gradvac")
class GradVac(GradientAggregation):
    """GradVac (Wang et al., ICLR 2021): raise each pair's cosine towards its running target."""

    Args = GradVacArgs

    def make(self):
        return torchjd_aggregator("GradVac", beta=self.args.gradvac_beta)
