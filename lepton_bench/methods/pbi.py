"""PBI: penalty-based boundary intersection (Zhang & Li, IEEE TEC 2007, MOEA/D's decomposition)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs, Weighting
from .preference import preference_vector


@dataclass
class PBIArgs:
    pbi_theta: float = 5.0        # the penalty theta on the distance to the preference line (the paper's 5)
    pbi_preference: dict[str, float] = field(default_factory=dict)   # task -> preference (missing 1),
                                  # normalised onto the simplex; unset: equal


@WEIGHTINGS.register("pbi")
class PBI(Weighting):
    """PBI (Zhang & Li, 2007): ``d1 + theta d2``, with d1 the losses' projection on the preference direction
    w/|w| and d2 their distance to it (torchjd's ``PBI`` scalarizer).

    Paper: "MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition" (there is no MTL code of
    the authors). The reference point z* is 0 for every task (the losses, cross-entropies, are bounded
    below by 0, the paper's ideal point); theta = 5 as the paper's experiments; one fixed preference
    (equal by default), the trade-off the benchmark evaluates."""

    Args = PBIArgs
    needs = Needs(every_task=True)   # the projection is over the vector of every task's loss

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.pbi_theta < 0:
            raise ConfigError(f"weighting_args.pbi_theta must be non-negative, not {self.args.pbi_theta}")
        self.preference = preference_vector("pbi_preference", self.tasks, self.args.pbi_preference)

    def to(self, device):
        super().to(device)
        from torchjd.scalarization import PBI as Scalarizer

        self.preference = self.preference.to(device)
        self.scalarizer = Scalarizer(self.args.pbi_theta, self.preference)
        self.w = self.preference / self.preference.norm()
        return self

    def combine(self, losses):
        L = self._stack(losses)
        total = self.scalarizer(L)
        if L.requires_grad:   # d total / d L_t: each task's weight this step (for the records)
            self.w = torch.autograd.grad(total, L, retain_graph=True)[0].detach()
        return total

    def weights(self):
        return self._per_task(self.w)
