"""MoCo (Fernando et al., ICLR 2023): tracked task gradients and projected simplex weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS
from .gradient import GradientArgs, Stateful, decayed


@dataclass
class MoCoArgs(GradientArgs):
    moco_beta: float = 0.5        # step beta of the gradient trackers y_t
    moco_beta_sigma: float = 0.5  # beta_k = beta / k^sigma
    moco_gamma: float = 0.1       # step gamma of the simplex weights lambda
    moco_gamma_sigma: float = 0.5  # gamma_k = gamma / k^sigma
    moco_rho: float = 0.0         # l2 regularisation rho of lambda's update
    moco_form: str = "official"   # "official": LibMTL's, after the authors' code (each gradient rescaled to norm
                                  # L_t, lambda by a softmax); "paper": Algorithm 1 (raw gradients, projection)


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
    """MoCo (Fernando et al., ICLR 2023): tracked task gradients and their min-norm-seeking weights.

    Paper: "Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent Approach".
    Per step k, on the shared parameters: the trackers y_t <- y_t - beta_k (y_t - h_t) (y = 0 at first); the
    weights lambda <- S(lambda - gamma_k (Y Y^T + rho I) lambda) (lambda = 1/T at first); the update
    Y^T lambda, with the new y and lambda. beta_k = ``moco_beta`` / k^``moco_beta_sigma``, gamma_k =
    ``moco_gamma`` / k^``moco_gamma_sigma``, rho = ``moco_rho``: LibMTL's defaults 0.5, 0.5, 0.1, 0.5, 0.
    The task-specific parameters get their own task's gradient.

    ``moco_form=official`` (default): LibMTL's ``weighting/MoCo.py``, "based on the authors' sharing code":
    h_t = g_t / (|g_t| + 1e-8) L_t (each gradient rescaled to norm L_t) and S = softmax. The authors' own
    repository (heshandevaka/MoCo) runs two forms: its Cityscapes code this one (rescaling optional) with
    the direction x T; its Office code raw gradients, a simplex projection and a factor 2 in lambda's step.
    ``moco_form=paper``: Algorithm 1, h_t = g_t and S the Euclidean projection onto the simplex.
    """

    Args = MoCoArgs
    revision = 2                  # 1: the paper's form was the default

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.moco_form not in ("official", "paper"):
            raise ConfigError(f"weighting_args.moco_form must be official or paper, not {self.args.moco_form!r}")

    def make(self):
        self.lam = torch.full((len(self.tasks),), 1 / len(self.tasks))
        self.y = None
        return super().make()

    def aggregate(self, step, losses):
        self.task_losses = torch.stack(self._ordered(losses)).detach()   # the rescaling's norms
        return super().aggregate(step, losses)

    def update(self, jacobian):
        self.k += 1
        a = self.args
        beta = decayed(a.moco_beta, a.moco_beta_sigma, self.k)
        gamma = decayed(a.moco_gamma, a.moco_gamma_sigma, self.k)
        if self.y is None:
            self.y = torch.zeros_like(jacobian)
            self.lam = self.lam.to(jacobian)
        official = a.moco_form == "official"
        h = jacobian / (jacobian.norm(dim=1, keepdim=True) + 1e-8) * self.task_losses.to(jacobian)[:, None] \
            if official else jacobian
        self.y = self.y - beta * (self.y - h)
        gram = self.y @ self.y.T + a.moco_rho * torch.eye(len(self.tasks), device=jacobian.device)
        step = self.lam - gamma * gram @ self.lam
        self.lam = torch.softmax(step, dim=0) if official else project_onto_simplex(step)
        return self.lam @ self.y

    def weights(self):
        return self._per_task(self.lam)
