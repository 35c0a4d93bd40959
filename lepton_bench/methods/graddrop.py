"""GradDrop (Chen et al., NeurIPS 2020): sign-consistent gradient dropout, a torchjd aggregator."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs
from .gradient import GradientAggregation, GradientArgs, add_extra_grads, torchjd_aggregator


@dataclass
class GradDropArgs(GradientArgs):
    graddrop_on: str = "auto"     # on the shared "features" (the paper's activations), the shared "params",
                                  # or "auto" (features where the tasks read one tensor)
    graddrop_form: str = "official"   # on the features: "official" (signs summed over the batch, whole
                                  # features dropped: LibMTL's and the authors' lingvo layer) or "elementwise"
                                  # (each element of the [batch, ...] gradient on its own: torchjd's on its rows)


@WEIGHTINGS.register("graddrop")
class GradDrop(GradientAggregation):
    """GradDrop (Chen et al., NeurIPS 2020): sign-consistent dropout.

    Paper: "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout". On the gradients
    w.r.t. the shared activations A, as the paper, where the tasks share one feature tensor; on the shared
    parameters otherwise (``weighting_args.graddrop_on``): ``auto`` puts it on the shared features where every
    task reads one tensor (one input group under hard sharing, one process), else on the shared parameters,
    the only place tasks of different inputs share; ``features`` / ``params`` force one.

    On the features, ``graddrop_form=official`` (default) is the authors' layer (tensorflow/lingvo
    ``core/graddrop.py``, ``marginalize_batch_dim``) and LibMTL's ``weighting/GradDrop.py``: G_t = sum over the
    batch of sign(A) * dL_t/dA; P = (1 + sum_t G_t / (sum_t |G_t| + 1e-7)) / 2 per feature; one U ~ U(0, 1) per
    feature; M_t = [P > U][G_t > 0] + [P < U][G_t < 0]; A gets sum_t M_t * dL_t/dA (the mask over the whole
    batch), leak 0. As LibMTL: strict inequalities (a G_t of exactly 0 is dropped; lingvo keeps it) and no
    norm rescaling (lingvo's default rescales). ``elementwise``: the mask drawn for each element of the
    batch's gradient (torchjd's ``GradDrop`` on the feature rows). On the parameters there is no batch: torchjd's
    ``GradDrop`` on the Jacobian rows (the paper's equations 2-4)."""

    Args = GradDropArgs
    revision = 2                  # 1: per element on the features
    _on = "params"   # until check() has seen the model

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.graddrop_on not in ("auto", "features", "params"):
            raise ConfigError(f"weighting_args.graddrop_on must be auto, features or params, "
                              f"not {self.args.graddrop_on!r}")
        if self.args.graddrop_form not in ("official", "elementwise"):
            raise ConfigError(f"weighting_args.graddrop_form must be official or elementwise, "
                              f"not {self.args.graddrop_form!r}")

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

    def to(self, device):
        super().to(device)
        self.gen = torch.Generator(device=device).manual_seed(self.seed)
        return self

    def make(self):
        return torchjd_aggregator("GradDrop")

    def _through_features(self, L, z, shared, extra, keep=False):
        if self.args.graddrop_form != "official":
            return super()._through_features(L, z, shared, extra, keep)
        grads = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0].float() for loss in L])
        torch.autograd.backward(z, grad_tensors=feature_drop(grads, z.detach(), self.gen).to(z.dtype),
                                inputs=shared, retain_graph=extra is not None)
        add_extra_grads(shared, extra)
        return None


def feature_drop(grads: torch.Tensor, activations: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """GradDrop's gradient at the activations A ([batch, ...]) from each task's ``grads`` ([T, batch, ...]):
    signs summed over the batch, one keep-draw per feature, the mask applied to every example's gradient.
    A non-finite gradient is not dropped: it reaches the sum, so the run's check names the task."""
    finite = torch.where(torch.isfinite(grads), grads, torch.zeros_like(grads))
    G = (finite * torch.sign(activations).to(finite.dtype)).sum(1)            # [T, ...features]
    P = 0.5 * (1 + G.sum(0) / (G.abs().sum(0) + 1e-7))
    U = torch.rand(P.shape, generator=gen, device=P.device, dtype=P.dtype)
    M = ((P > U) & (G > 0)) | ((P < U) & (G < 0))
    return (finite * M.unsqueeze(1).to(finite.dtype)).sum(0) + 0 * grads.sum(0)
