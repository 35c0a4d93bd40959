"""CR-MOGM (Zhou et al., NeurIPS 2022): MGDA's weights smoothed across steps, from torchjd."""

from __future__ import annotations

from dataclasses import dataclass

from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs


@dataclass
class CRMOGMArgs(GradientArgs):
    crmogm_alpha: float = 0.9     # EMA factor of the (MGDA) weights


@WEIGHTINGS.register("cr_mogm")
class CRMOGM(GradientAggregation):
    """CR-MOGM (Zhou et al., NeurIPS 2022): MGDA's weights smoothed by an EMA across steps."""

    Args = CRMOGMArgs

    def make(self):
        import torchjd.aggregation as A

        return A.GramianWeightedAggregator(A.CRMOGMWeighting(A.MGDAWeighting(), alpha=self.args.crmogm_alpha))
