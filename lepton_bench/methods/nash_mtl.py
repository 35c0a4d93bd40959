"""Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution, a torchjd aggregator."""

from __future__ import annotations

from .base import WEIGHTINGS
from .gradient import GradientAggregation, torchjd_aggregator


@WEIGHTINGS.register("nash_mtl")
class NashMTL(GradientAggregation):
    """Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution.

    As the authors' code, the task-specific parameters get their task's gradient times its weight alpha_t
    (``weighting_args.task_grads=own``: unweighted, as before)."""

    extra = "nash-mtl"
    own_task_grads = "weighted"

    def make(self):
        return torchjd_aggregator("NashMTL", n_tasks=len(self.tasks))
