"""PCD: priority-constrained descent (TMLR 2026), a torchjd aggregator with one primary task."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class PCDArgs(GradientArgs):
    pcd_primary: str = ""         # the primary task; "" = the run's first main task (the one not auxiliary)
    pcd_tau: float = 0.02         # share tau of normalised first-order progress each other task is guaranteed
    pcd_beta: float = 0.999       # decay of the moving average of the squared gradient norms
    pcd_eps: float = 1e-8         # added to that average before its inverse square root


@WEIGHTINGS.register("pcd")
class PCD(GradientAggregation):
    """PCD (TMLR 2026): follow the primary task's gradient as closely as possible, subject to
    each other task getting at least a share tau of the progress its own normalised gradient would give.

    Paper: "Not All Objectives Are Born Equal: Priority-Constrained Descent for Hierarchical Multi-Objective
    Optimization" (DaraVaram/priority-constrained-descent); torchjd's ``PCD`` with its defaults tau 0.02,
    beta 0.999, eps 1e-8. It is for a main task with auxiliary ones: the primary is ``pcd_primary``, else
    the run's main task (``tagging-ner-primary-pcd``: NER, POS and chunking secondary). A run without
    auxiliary tasks takes its first task as primary (``hard-pcd``: the first task listed)."""

    Args = PCDArgs

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.pcd_primary and self.args.pcd_primary not in self.tasks:
            raise ConfigError(f"weighting_args.pcd_primary={self.args.pcd_primary} is not a task of this run "
                              f"({', '.join(self.tasks)})")

    @property
    def primary(self) -> str:
        return self.args.pcd_primary or (self.main or self.tasks)[0]

    def make(self):
        return torchjd_aggregator("PCD", tau=self.args.pcd_tau, beta=self.args.pcd_beta, eps=self.args.pcd_eps)

    def _gramian_weights(self, gramian):
        first = self.tasks.index(self.primary)   # torchjd's PCD reads the first row as the primary's
        order = torch.tensor([first, *(i for i in range(len(self.tasks)) if i != first)], device=gramian.device)
        w = torch.empty_like(gramian[0])
        w[order] = self.aggregator.gramian_weighting(gramian[order][:, order])
        self.last = w.detach()
        return w

    def _aggregate(self, J, keep):
        finite = torch.where(torch.isfinite(J), J, torch.zeros_like(J))
        w = self._gramian_weights(finite @ finite.T)
        return (w if keep else None), w @ finite + 0 * J.sum(0)

    def weights(self):
        last = getattr(self, "last", None)
        return super().weights() if last is None else self._per_task(last)
