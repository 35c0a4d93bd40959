"""ExcessMTL (He et al., ICML 2024): weights by the tasks' excess risks, a torchjd aggregator."""

from __future__ import annotations

from dataclasses import dataclass

from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class ExcessMTLArgs(GradientArgs):
    excess_mtl_step: float = 1.0  # step of the exponentiated weight update (torchjd's robust_step_size)


@WEIGHTINGS.register("excess_mtl")
class ExcessMTL(GradientAggregation):
    """ExcessMTL (He et al., ICML 2024): weights by each task's estimated excess risk."""

    Args = ExcessMTLArgs

    def make(self):
        return torchjd_aggregator("ExcessMTL", robust_step_size=self.args.excess_mtl_step)
