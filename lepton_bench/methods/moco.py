"""MoCo (Fernando et al., ICLR 2023): tracked task gradients and projected simplex weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import WEIGHTINGS
from .gradient import GradientArgs, Stateful, decayed


@dataclass
class MoCoArgs(GradientArgs):
    moco_beta: float = 0.5        # step beta of the gradient trackers y_t
    moco_beta_sigma: float = 0.5  # beta_k = beta / k^sigma
    moco_gamma: float = 0.1       # step gamma of the simplex weights lambda
    moco_gamma_sigma: float = 0.5  # gamma_k = gamma / k^sigma
    moco_rho: float = 0.0         # l2 regularisation rho of lambda's update


def project_onto_simplex(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of ``v`` onto the probability simplex {x >= 0, sum x = 1} (Held et al.
    1974; the sort-based form of Wang & Carreira-Perpinan 2013), without a host sync."""
    u, _ = torch.sort(v, descending=True)
    cumulative = u.cumsum(0) - 1
    k = torch.arange(1, len(v) + 1, device=v.device, dtype=v.dtype)
    rho = (u - cumulative / k > 0).sum()          # the condition holds on a prefix: its length
    theta = cumulative.gather(0, (rho - 1).clamp(min=0).view(1)) / rho.clamp(min=1)
    return (v - theta).clamp(min=0)


@WEIGHTINGS.register("moco")
class MoCo(Stateful):
    """MoCo (Fernando et al., ICLR 2023): projected-gradient simplex weights on tracked task gradients.

    Paper: "Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent Approach".

    Per step k, on the shared parameters (the paper's Algorithm 1): the trackers
    y_t <- y_t - beta_k (y_t - grad L_t) (y = 0 at first); the weights
    lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda) (lambda = 1/T at first); the update
    Y^T lambda, with the new y and lambda. beta_k = ``moco_beta`` / k^``moco_beta_sigma``, gamma_k =
    ``moco_gamma`` / k^``moco_gamma_sigma``, rho = ``moco_rho``: LibMTL's defaults 0.5, 0.5, 0.1, 0.5, 0.
    The task-specific parameters get their own task's gradient.

    Where this differs from LibMTL: LibMTL (after the authors' code) first rescales each task gradient to
    the norm L_t, and replaces the projection onto the simplex by a softmax; here the paper's projected
    step on the raw gradients.
    """

    Args = MoCoArgs

    def make(self):
        self.lam = torch.full((len(self.tasks),), 1 / len(self.tasks))
        self.y = None
        return super().make()

    def update(self, jacobian):
        self.k += 1
        a = self.args
        beta = decayed(a.moco_beta, a.moco_beta_sigma, self.k)
        gamma = decayed(a.moco_gamma, a.moco_gamma_sigma, self.k)
        if self.y is None:
            self.y = torch.zeros_like(jacobian)
            self.lam = self.lam.to(jacobian)
        self.y = self.y - beta * (self.y - jacobian)
        gram = self.y @ self.y.T + a.moco_rho * torch.eye(len(self.tasks), device=jacobian.device)
        self.lam = project_onto_simplex(self.lam - gamma * gram @ self.lam)
        return self.lam @ self.y

    def weights(self):
        return self._per_task(self.lam)
