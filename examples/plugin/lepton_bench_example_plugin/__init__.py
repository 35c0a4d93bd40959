"""Example lepton_bench plugin: registers the ``inverse_loss`` weighting (and with it, derived from the
registry, the ``hard-inverse_loss`` variant). Install it with ``pip install -e examples/plugin``."""

import torch

from lepton_bench.weighting import WEIGHTINGS, Weighting


@WEIGHTINGS.register("inverse_loss")
class InverseLoss(Weighting):
    """Weights proportional to 1 / L_t (detached), summing to T: every task's weighted loss is
    equal, so no task dominates by the scale of its loss."""

    def combine(self, losses):
        L = torch.stack(list(losses.values()))
        inv = 1.0 / L.detach().clamp_min(1e-8)
        return (len(L) * inv / inv.sum() * L).sum()
