"""IMTL (Liu et al., ICLR 2021): IMTL-G (gradient balancing, a torchjd aggregator) and the hybrid IMTL
(IMTL-L's learned loss scales + IMTL-G), the family the paper defines together."""

from __future__ import annotations

import torch

from .base import WEIGHTINGS
from .gradient import GradientAggregation, torchjd_aggregator


@WEIGHTINGS.register("imtl_g")
class IMTLG(GradientAggregation):
    """IMTL-G (Liu et al., ICLR 2021): equal projections on the update."""

    def make(self):
        return torchjd_aggregator("IMTLG")


@WEIGHTINGS.register("imtl")
class IMTL(GradientAggregation):
    """IMTL (Liu et al., ICLR 2021): learned loss scales (IMTL-L) + IMTL-G's weights on their gradients.

    Paper: "Towards Impartial Multi-task Learning" (the hybrid IMTL).

    IMTL-L: each task's loss becomes e^{s_t} L_t - s_t, with s_t (0 at first) trained by the run's
    optimizer on that objective (its gradient e^{s_t} L_t - 1 drives every scaled loss towards 1).
    IMTL-G: on the shared parameters, with g_t the gradient of e^{s_t} L_t, the weights alpha (summing
    to 1) for which sum_t alpha_t g_t has equal projections on every unit vector g_t / |g_t|
    (torchjd's ``IMTLG``, the paper's closed form generalised to linearly dependent gradients). The
    task-specific parameters get the gradient of their own scaled loss. ``weights()``: alpha_t e^{s_t},
    each raw loss's weight on the shared parameters.

    Where this differs from the paper: the paper takes the gradients w.r.t. the shared features z (like
    MGDA-UB); here, like ``imtl_g``, w.r.t. the shared parameters by default, since a run of tasks with
    different inputs has no one feature tensor; ``weighting_args.jacobian=features`` gives the paper's
    form for one input group under hard sharing.
    """

    def make(self):
        weighting = torchjd_aggregator("IMTLG").weighting   # Jacobian -> its Gramian -> IMTL-G's weights
        self.alpha = torch.full((len(self.tasks),), 1 / len(self.tasks))

        def aggregate(jacobian: torch.Tensor) -> torch.Tensor:
            # a non-finite row (a non-finite loss) would stop the SVD of IMTL-G's pseudo-inverse with an
            # error: the weights of a zero Jacobian (0) instead, so the non-finite rows reach the gradients
            # and the run's check names the task, as with every method
            finite = torch.isfinite(jacobian).all()
            self.alpha = weighting(torch.where(finite, jacobian, torch.zeros_like(jacobian))).detach()
            return self.alpha @ jacobian

        return aggregate

    def to(self, device):
        super().to(device)
        self.log_scales = torch.zeros(len(self.tasks), device=device, requires_grad=True)
        return self

    def parameters(self):
        return [self.log_scales]

    def combine(self, losses):
        s = self.log_scales[[self.tasks.index(t) for t in losses]]
        return (torch.exp(s) * torch.stack(list(losses.values())) - s).sum()

    def backward(self, step):
        raw = self._ordered(step.losses())
        s = self.log_scales
        # IMTL-L: s_t descends its own objective e^{s_t} L_t - s_t (the losses are constants here)
        objective = (torch.exp(s) * torch.stack([v.detach() for v in raw]).to(s.dtype) - s).sum()
        torch.autograd.backward(objective, inputs=[s])
        scale = torch.exp(s.detach())
        return self.aggregate(step, {t: scale[i] * v for i, (t, v) in enumerate(zip(self.tasks, raw, strict=True))})

    def weights(self):
        return {t: float(v) for t, v in zip(self.tasks, self.alpha.cpu() * torch.exp(self.log_scales.detach().cpu()),
                                            strict=True)}
