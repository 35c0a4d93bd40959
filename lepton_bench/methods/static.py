"""Static weights: a fixed weight per task, the baseline every adaptive method must beat."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .base import WEIGHTINGS, Weighting


@dataclass
class StaticArgs:
    static: dict[str, float] = field(default_factory=dict)   # task -> its loss weight (missing tasks: 1)


@WEIGHTINGS.register("static")
class StaticWeighting(Weighting):
    """Static weights: fixed, from ``weighting_args.static`` (missing tasks: 1). A weight sweep is the
    baseline every adaptive method must beat (Xin et al. 2022, "Do current MTL methods work?")."""

    Args = StaticArgs

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        unknown = set(self.args.static) - set(self.tasks)
        if unknown:
            raise ConfigError(f"static weights for tasks not in this run: {', '.join(sorted(unknown))}")
        self.w = {t: float(self.args.static.get(t, 1.0)) for t in self.tasks}

    def combine(self, losses):
        return sum(self.w[t] * v for t, v in losses.items())

    def weights(self):
        return dict(self.w)
