"""DB-MTL (Lin et al., 2023): dual balancing of loss scales and gradient magnitudes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import WEIGHTINGS
from .gradient import GradientArgs, Stateful, decayed


@dataclass
class DBMTLArgs(GradientArgs):
    db_beta: float = 0.9          # EMA factor beta of the task gradients
    db_beta_sigma: float = 0.0    # beta_k = beta / k^sigma (0: a constant beta)


@WEIGHTINGS.register("db_mtl")
class DualBalancing(Stateful):
    """DB-MTL (Lin et al., 2023): log-losses; each task's averaged gradient scaled to the largest norm.

    Paper: "Dual-Balancing for Multi-Task Learning", arXiv 2308.12029.

    Loss-scale balancing: every task's loss L_t is replaced by log L_t (log(L_t + 1e-8)), so the task
    gradients are grad L_t / L_t, whatever the loss's scale; the task-specific parameters get these too.
    Gradient-magnitude balancing, on the shared parameters: g_t <- beta_k g_t + (1 - beta_k) grad log L_t
    (g_t = 0 at first; beta_k = ``db_beta`` / k^``db_beta_sigma``, as in the paper's Algorithm 1: 0.9 and
    0, i.e. a plain EMA, by default), then the update sum_t (max_s |g_s| / |g_t|) g_t: every task
    contributes the largest norm. ``weights()``: the factors max_s |g_s| / |g_t|.
    """

    Args = DBMTLArgs
    eps = 1e-8

    def make(self):
        self.alpha = torch.ones(len(self.tasks))
        self.ema = None
        return super().make()

    def backward(self, step):
        losses = self._ordered(step.losses())
        return self.aggregate(step, {t: torch.log(v + self.eps) for t, v in zip(self.tasks, losses, strict=True)})

    def update(self, jacobian):
        self.k += 1
        beta = decayed(self.args.db_beta, self.args.db_beta_sigma, self.k)
        if self.ema is None:
            self.ema = torch.zeros_like(jacobian)
        self.ema = beta * self.ema + (1 - beta) * jacobian
        norms = self.ema.norm(dim=1)
        self.alpha = norms.max() / (norms + self.eps)
        return self.alpha @ self.ema

    def weights(self):
        return self._per_task(self.alpha)
