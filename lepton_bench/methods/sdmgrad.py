"""SDMGrad (Xiao et al., NeurIPS 2023): direction-oriented weights from two batches, torchjd's weighting."""

from __future__ import annotations

from dataclasses import dataclass

from .base import WEIGHTINGS
from .gradient import GradientArgs, TwoBatches, torchjd_aggregator


@dataclass
class SDMGradArgs(GradientArgs):
    sdmgrad_lambda: float = 0.3   # pull towards the mean gradient (the authors' experiments, LibMTL)


@WEIGHTINGS.register("sdmgrad")
class SDMGrad(TwoBatches):
    """SDMGrad (Xiao et al., NeurIPS 2023): direction-oriented weights from two independent batches."""

    Args = SDMGradArgs

    def make(self):
        return torchjd_aggregator("SDMGradWeighting", lambda_=self.args.sdmgrad_lambda)
