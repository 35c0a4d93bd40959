"""UW: homoscedastic uncertainty weighting (Kendall et al., CVPR 2018)."""

from __future__ import annotations

import torch

from .base import WEIGHTINGS, Weighting


@WEIGHTINGS.register("uw")
class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty (Kendall et al., CVPR 2018): sum of exp(-s_t)/2 * L_t + s_t/2,
    with the log-variances s_t learned by the run's optimizer."""

    def to(self, device):
        super().to(device)
        self.log_vars = torch.zeros(len(self.tasks), device=device, requires_grad=True)
        return self

    def parameters(self):
        return [self.log_vars]

    def combine(self, losses):
        idx = [self.tasks.index(t) for t in losses]
        s = self.log_vars[idx]
        return (0.5 * torch.exp(-s) * torch.stack(list(losses.values())) + 0.5 * s).sum()

    def weights(self):
        return {t: float(0.5 * torch.exp(-v)) for t, v in zip(self.tasks, self.log_vars.detach(), strict=True)}
