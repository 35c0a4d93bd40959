"""MoDo (Chen et al., JMLR 2024): weights from two independent batches, torchjd's weighting."""

from __future__ import annotations

from dataclasses import dataclass

from .base import WEIGHTINGS
from .gradient import GradientArgs, TwoBatches, torchjd_aggregator


@dataclass
class MoDoArgs(GradientArgs):
    modo_gamma: float = 0.1       # step of the task weights lambda (torchjd's default)
    modo_rho: float = 0.1         # l2 regularisation of lambda's step


@WEIGHTINGS.register("modo")
class MoDo(TwoBatches):
    """MoDo (Chen et al., JMLR 2024): weights by a projected step on J_1 J_2^T of two independent batches."""

    Args = MoDoArgs

    def make(self):
        return torchjd_aggregator("MoDoWeighting", gamma=self.args.modo_gamma, rho=self.args.modo_rho)
