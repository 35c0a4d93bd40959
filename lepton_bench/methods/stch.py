"""STCH: smooth Tchebycheff scalarization (Lin et al., ICML 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs, Weighting


@dataclass
class STCHArgs:
    stch_mu: float = 1.0          # smoothing mu of the log-sum-exp (-> 0: the Tchebycheff max)
    stch_preference: dict[str, float] = field(default_factory=dict)   # task -> preference (missing: 1),
                                  # normalised onto the simplex; unset: equal


@WEIGHTINGS.register("stch")
class SmoothTchebycheff(Weighting):
    """Smooth Tchebycheff (Lin et al., ICML 2024): mu log sum_t exp(lambda_t (L_t - z_t) / mu), z = 0.

    Paper: "Smooth Tchebycheff Scalarization for Multi-Objective Optimization".

    As mu -> 0 it is the Tchebycheff max_t lambda_t (L_t - z_t) (the worst weighted task), as mu grows
    it approaches the linear mean (plus a constant); each task's weight is lambda_t times the softmax of
    the weighted gaps. Preferences lambda: ``weighting_args.stch_preference`` (task -> weight, missing 1)
    normalised onto the simplex as in the paper, equal by default. ``weighting_args.stch_mu`` is mu.

    The ideal point z is 0 for every task: the paper's z* is each objective's ideal (lowest) value, and
    the task losses here (cross-entropies) have infimum 0. Where this differs from LibMTL: LibMTL (and
    the paper authors' MTL code) first trains some epochs on sum_t log L_t, then uses
    log(L_t / nadir_t) with nadir_t the warm-up epoch's mean loss, times T; here the paper's equation on
    the raw losses, no warm-up, no log, no factor T (so the gradient is 1/T the scale of the mean loss's:
    AdamW is invariant to a constant loss scale, up to its epsilon and the gradient-norm clip).
    """

    Args = STCHArgs
    needs = Needs(every_task=True)   # a max over the tasks needs every task's loss

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        unknown = set(self.args.stch_preference) - set(self.tasks)
        if unknown:
            raise ConfigError(f"stch preferences for tasks not in this run: {', '.join(sorted(unknown))}")
        if self.args.stch_mu <= 0:
            raise ConfigError(f"weighting_args.stch_mu must be positive, not {self.args.stch_mu}")
        pref = [float(self.args.stch_preference.get(t, 1.0)) for t in self.tasks]
        if min(pref) < 0 or sum(pref) <= 0:
            raise ConfigError(f"stch preferences must be non-negative with a positive sum, not {pref}")
        self.preference = torch.tensor(pref) / sum(pref)

    def to(self, device):
        super().to(device)
        self.preference = self.preference.to(device)
        self.ideal = torch.zeros(len(self.tasks), device=device)
        self.w = self.preference.clone()   # d total / d L_t of the last step
        return self

    def combine(self, losses):
        mu = self.args.stch_mu
        gaps = self.preference * (self._stack(losses) - self.ideal) / mu
        self.w = self.preference * torch.softmax(gaps.detach(), dim=0)
        return mu * torch.logsumexp(gaps, dim=0)

    def weights(self):
        return self._per_task(self.w)
