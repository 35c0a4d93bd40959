"""COSMOS (Ruchte & Grabocka, ICDM 2021): a linear scalarization with a cosine-similarity penalty."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs, Weighting
from .preference import preference_vector


@dataclass
class COSMOSArgs:
    cosmos_lambda: float = 2.0    # the cosine penalty lambda (the authors' default, multi-MNIST's)
    cosmos_alpha: float = 1.2     # the rays r ~ Dirichlet(alpha), drawn anew every step (the authors' 1.2);
                                  # 0: the fixed ray ``cosmos_preference``
    cosmos_preference: dict[str, float] = field(default_factory=dict)   # the fixed ray (cosmos_alpha=0):
                                  # task -> preference (missing 1), normalised onto the simplex; unset: equal


@WEIGHTINGS.register("cosmos")
class COSMOS(Weighting):
    """COSMOS (Ruchte & Grabocka, ICDM 2021): ``sum_t r_t L_t - lambda cos(r, L)``.

    Paper: "Scalable Pareto Front Approximation for Deep Multi-Objective Learning"; the loss is torchjd's
    ``COSMOS`` scalarizer, and as the authors' code (ruchtem/cosmos ``methods/cosmos/cosmos.py``) the ray r
    is drawn from Dirichlet(``cosmos_alpha``) every step, lambda = ``cosmos_lambda`` (their defaults 1.2
    and 2). Deviation: the authors also feed r to the model (concatenated to the input) so that one model
    answers for every ray; the models here take no preference input, so the one model trained is asked
    for no particular ray (it is evaluated as every model here is). ``cosmos_alpha=0`` trains at one fixed
    ray instead (``cosmos_preference``, equal by default): the benchmark's question for one trade-off."""

    Args = COSMOSArgs
    needs = Needs(every_task=True)   # the cosine is over the vector of every task's loss

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.cosmos_lambda < 0 or self.args.cosmos_alpha < 0:
            raise ConfigError(f"weighting_args.cosmos_lambda and cosmos_alpha must be non-negative, not "
                              f"{self.args.cosmos_lambda}, {self.args.cosmos_alpha}")
        self.ray = preference_vector("cosmos_preference", self.tasks, self.args.cosmos_preference)

    def to(self, device):
        super().to(device)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.ray = self.ray.to(device)
        self.w = self.ray.clone()
        return self

    def draw(self) -> torch.Tensor:
        """This step's ray: a Dirichlet draw from the run's seeded generator, or the fixed one."""
        if self.args.cosmos_alpha == 0:
            return self.ray
        gamma = torch._standard_gamma(torch.full((len(self.tasks),), self.args.cosmos_alpha), generator=self.gen)
        return (gamma / gamma.sum()).to(self.device, non_blocking=True)

    def combine(self, losses):
        from torchjd.scalarization import COSMOS as Scalarizer

        L = self._stack(losses)
        ray = self.draw()
        total = Scalarizer(self.args.cosmos_lambda, ray)(L)
        # d total / d L: r - lambda d cos(r, L) / dL, the weight each task's loss gets this step
        self.w = torch.autograd.grad(total, L, retain_graph=True)[0].detach() if L.requires_grad else ray
        return total

    def weights(self):
        return self._per_task(self.w)
