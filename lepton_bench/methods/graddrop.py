"""GradDrop (Chen et al., NeurIPS 2020): sign-consistent gradient dropout, a torchjd aggregator."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class GradDropArgs(GradientArgs):
    graddrop_on: str = "auto"     # on the shared "features" (the paper's activations), the shared "params",
                                  # or "auto" (features where the tasks read one tensor)


@WEIGHTINGS.register("graddrop")
class GradDrop(GradientAggregation):
    """GradDrop (Chen et al., NeurIPS 2020): sign-consistent dropout.

    On the gradients w.r.t. the shared activations, as the paper, where the tasks share one feature
    tensor (per element, not summed over the batch); on the shared parameters otherwise
    (``weighting_args.graddrop_on``): ``auto`` puts it on the shared features where every task reads one
    tensor (one input group under hard sharing, one process), else on the shared parameters, the only
    place tasks of different inputs share; ``features`` / ``params`` force one."""

    Args = GradDropArgs
    _on = "params"   # until check() has seen the model

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.graddrop_on not in ("auto", "features", "params"):
            raise ConfigError(f"weighting_args.graddrop_on must be auto, features or params, "
                              f"not {self.args.graddrop_on!r}")

    @property
    def needs(self) -> Needs:
        forced = self.args.jacobian == "features" or self.args.graddrop_on == "features"
        return Needs(every_task=True, one_feature_tensor=forced)

    @property
    def uses_features(self) -> bool:
        return self.args.jacobian == "features" or self._on == "features"

    def check(self, model):
        super().check(model)
        on = self.args.graddrop_on
        one_tensor = (len(set(model.group_of.values())) == 1 and not self.world.active
                      and len({model.body_key(t) for t in model.task_names}) == 1)
        self._on = ("features" if one_tensor else "params") if on == "auto" else on

    def make(self):
        return torchjd_aggregator("GradDrop")
