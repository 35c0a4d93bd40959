"""Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution, torchjd's solver."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class NashMTLArgs(GradientArgs):
    nash_max_norm: float = 1.0    # the shared update's norm is clipped to this (0: no clip); the authors' 1.0


def clipped(update: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``update`` scaled down to norm ``max_norm`` when longer (``clip_grad_norm_`` on the shared
    parameters, as the authors' code; 0 keeps it), without a host sync."""
    if max_norm <= 0:
        return update
    return update * torch.clamp(max_norm / (torch.linalg.norm(update) + 1e-6), max=1.0)


@WEIGHTINGS.register("nash_mtl")
class NashMTL(GradientAggregation):
    """Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution alpha of the task gradients.

    As the authors' code (AvivNavon/nash-mtl ``methods/weight_methods.py``, the same in LibMTL):
    ``sum_t alpha_t L_t`` is backpropagated, then ``clip_grad_norm_(shared_parameters, max_norm)``. So the
    shared parameters get ``alpha J`` clipped to norm ``nash_max_norm`` (1.0), and the task-specific ones
    their task's gradient times the unclipped alpha_t (``weighting_args.task_grads=own``: unweighted).
    torchjd's ``NashMTL`` folds the clip into its weights, which would scale the heads' gradients as well:
    its solver runs here with ``max_norm=0`` and the clip is applied to the shared update alone."""

    Args = NashMTLArgs
    revision = 2                  # 1: the heads got the clipped weights (torchjd's), not the authors' alpha
    extra = "nash-mtl"
    own_task_grads = "weighted"

    def make(self):
        return torchjd_aggregator("NashMTL", n_tasks=len(self.tasks), max_norm=0.0)

    def _aggregate(self, J, keep):
        finite = torch.where(torch.isfinite(J), J, torch.zeros_like(J))
        poison = 0 * J.sum(0)
        alpha = self.aggregator.weighting(finite)   # unclipped
        update = clipped(alpha @ finite, self.args.nash_max_norm) + poison
        return (alpha if keep else None), update
