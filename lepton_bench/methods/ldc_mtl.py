"""LDC-MTL (Xiao et al., 2025): a router's task weights and a penalty on the weighted losses' discrepancy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs, Weighting


@dataclass
class LDCMTLArgs:
    ldc_lambda: float = 0.05      # the discrepancy penalty lambda (the authors' NYUv2 default; CelebA 0.01)
    ldc_min: float = 0.2          # the router's weights clamped to [ldc_min, ldc_max] (the authors' bounds)
    ldc_max: float = 0.8
    ldc_rescale: bool = True      # divide each loss by r_t = L_t / min_s L_s of the first step (the authors'
                                  # NYUv2 code, "rescaled normalization"; their CelebA code: no rescaling)


@WEIGHTINGS.register("ldc_mtl")
class LDCMTL(Weighting):
    """LDC-MTL (Xiao et al., 2025): ``sum_t w_t l_t / sum_t w_t + lambda sum_t |w_t l_t - w_{t+1} l_{t+1}|``.

    Paper: "LDC-MTL: Balancing Multi-Task Learning through Scalable Loss Discrepancy Control" (arXiv
    2502.08585); as the authors' code (OptMN-Lab/LDC-MTL, ``experiments/nyuv2``): the weights w come from a
    router, one linear layer and a softmax over the features the heads read, pooled over the batch (and
    positions), clamped to [0.2, 0.8], trained with the model by the run's optimizer (its gradient reaches
    the encoder, as theirs); l_t = L_t / r_t with r fixed at the first step; one backward: O(1) in the
    number of tasks. The router reads the concatenation of each input group's feature tensor (their model
    concatenates the three tasks' attention outputs; under hard sharing the tasks of a group read one)."""

    Args = LDCMTLArgs
    needs = Needs(every_task=True)   # the discrepancy chains every task's weighted loss

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        a = self.args
        if a.ldc_lambda < 0 or not 0 <= a.ldc_min <= a.ldc_max <= 1:
            raise ConfigError(f"weighting_args: ldc_lambda must be >= 0 and 0 <= ldc_min <= ldc_max <= 1, not "
                              f"{a.ldc_lambda}, {a.ldc_min}, {a.ldc_max}")
        self.router: nn.Module | None = None
        self.ratios: torch.Tensor | None = None
        self.w = torch.full((len(self.tasks),), 1 / len(self.tasks))

    def check(self, model):
        """The router, sized by the model: each input group's features in, one weight per task out."""
        # one feature tensor per input group and body (hard sharing: one per group)
        bodies = len({(model.group_of[t], model.body_key(t)) for t in model.task_names}) \
            if hasattr(model, "body_key") else 1
        dim = getattr(model, "feature_dim", None)
        if dim is None:
            raise ConfigError("LDC-MTL's router reads the features the heads read: this model does not say their "
                              "size (MultiTaskModel.feature_dim)")
        gen = torch.Generator().manual_seed(self.seed)   # the router's initial weights: the run's seed
        layer = nn.Linear(dim * bodies, len(self.tasks))
        with torch.no_grad():
            bound = 1 / (dim * bodies) ** 0.5   # nn.Linear's own initialisation, from this generator
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
        self.router = layer.to(self.device)

    def parameters(self):
        return [] if self.router is None else list(self.router.parameters())

    def route(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The task weights of this step, from its features pooled over all but their last dimension."""
        pooled = torch.cat([f.float().mean(dim=tuple(range(f.dim() - 1))) for f in features])
        return torch.softmax(self.router(pooled), dim=-1).clamp(self.args.ldc_min, self.args.ldc_max)

    def objective(self, L: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The authors' total loss from the task losses L and the weights w."""
        if self.ratios is None:   # fixed at the first step, as theirs (the smallest loss's task: 1)
            first = L.detach().float()
            self.ratios = first / first.min().clamp(min=1e-12) if self.args.ldc_rescale else torch.ones_like(first)
        wl = w * (L / self.ratios.to(L))
        return wl.sum() / w.sum() + self.args.ldc_lambda * (wl[:-1] - wl[1:]).abs().sum()

    def backward(self, step):
        if self.router is None:
            self.check(step.model)
        L = self._stack(step.losses())
        w = self.route(step.feature_tensors())
        total = self.objective(L, w)
        extra = step.extra()
        (total if extra is None else total + extra).backward()
        self.w = w.detach()
        return total.detach()

    def combine(self, losses):   # without a step (no features): the router's last weights
        return self.objective(self._stack(losses), self.w.to(self.device))

    def weights(self):
        return self._per_task(self.w)
