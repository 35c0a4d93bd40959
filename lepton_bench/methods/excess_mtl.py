"""ExcessMTL (He et al., ICML 2024): weights by the tasks' excess risks, as the authors' code runs it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class ExcessMTLArgs(GradientArgs):
    excess_mtl_step: float = 1.0  # step eta of the exponentiated weight update (robust_step_size; the authors'
                                  # README runs 1, their config's default is 1e-2)


@WEIGHTINGS.register("excess_mtl")
class ExcessMTL(GradientAggregation):
    """ExcessMTL (He et al., ICML 2024): weights by each task's estimated excess risk.

    Paper: "Robust Multi-Task Learning with Excess Risks". As the authors' code (uiuctml/ExcessMTL
    ``weighting/ExcessMTL.py``, the same in LibMTL): per step, S_t += g_t^2, the excess risk
    E_t = g_t^T diag(sqrt(S_t + 1e-7))^-1 g_t; the first step records E as the baseline E^0 and keeps the
    weights at 1; from the second, w <- w exp(eta E / E^0), renormalised to sum to T. The update is
    sum_t w_t g_t, and the heads get w_t times their own gradient (the authors backpropagate
    sum_t w_t L_t). Torchjd's ``ExcessMTL`` with ``n_warmup_steps=1`` is this update divided by T (its
    default, 0 warm-up steps, already moves the weights with the raw E at the first step, which can make
    them one-hot); it runs here with 1, times T."""

    Args = ExcessMTLArgs
    revision = 2                  # 1: torchjd's default, the first step's raw excess risks moved the weights
    own_task_grads = "weighted"

    def make(self):
        return torchjd_aggregator("ExcessMTL", robust_step_size=self.args.excess_mtl_step, n_warmup_steps=1)

    def _aggregate(self, J, keep):
        finite = torch.where(torch.isfinite(J), J, torch.zeros_like(J))
        w = len(self.tasks) * self.aggregator.weighting(finite)   # the authors' scale: the weights sum to T
        self.last = w.detach()
        return (w if keep else None), w @ finite + 0 * J.sum(0)

    def weights(self):
        last = getattr(self, "last", None)
        return super().weights() if last is None else self._per_task(last)
