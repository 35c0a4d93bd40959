"""GO4Align (Shen et al., NeurIPS 2024): task weights by K-means over risk-guided group indicators."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs, Weighting


@dataclass
class GO4AlignArgs:
    go4align_groups: int = 2      # K, the number of groups (the paper's NYUv2 setting, Sec. 5.2 "Influence of Group
                                  # Number": K = 2 for NYUv2, 5 for QM9; their trainer's CLI default 1 is outside the
                                  # paper's 1 < K <= M). K = 1: every task the mean indicator (their code's branch);
                                  # K = the number of tasks: the indicators themselves (the paper's Table 3 row
                                  # "without grouping")
    go4align_beta: float = 1e-4   # beta, the temperature of the smoothness vector Q (their ``robust_step_size``,
                                  # default 1e-4 in the NYUv2 trainer)
    go4align_scale: str = "sum"   # the scale vector P: "sum" (their code: sum_s L_s / L_t) or "mean" (the paper's
                                  # Eq. 5: the average risk over L_t; 1/T of "sum")


@WEIGHTINGS.register("go4align")
class GO4Align(Weighting):
    """GO4Align (Shen et al., NeurIPS 2024): sum_t omega_{k(t)} L_t, the group weights omega and the groups k(t)
    from K-means on the risk-guided group indicators gamma = P * Q, recomputed every step.

    Paper: "GO4Align: Group Optimization for Multi-Task Alignment" (Eqs. 3-7, Algorithm 1); as the authors' code
    (autumn9999/GO4Align ``methods/cluster_methods.py``, ``GO4ALIGN.get_weighted_loss``; hyper-parameters from
    ``experiments/nyuv2/trainer.py``), each step, on the detached losses L of every task:

    - the scale vector P_t = sum_s L_s / L_t (``go4align_scale=mean``: the paper's Eq. 5, mean_s L_s / L_t);
    - the smoothness vector Q <- Q * exp(-beta L), renormalised to sum 1 (Eq. 6; Q starts at 1/T, and this step's
      losses are in it before it is used, as theirs);
    - the indicators gamma = P * Q (Eq. 7); K-means (Lloyd's algorithm, as the ``kmeans_pytorch.kmeans`` their
      code calls: K distinct indicators drawn as the initial centres, squared Euclidean distance, an empty cluster
      re-seeded with a random indicator, stopped once (sum_k |shift of centre k|)^2 < 1e-4) gives each task its
      group; the group weight is the group's centre, the mean of its tasks' indicators (Eq. 3);
    - the loss sum_t omega_{k(t)} L_t, the weights detached (gradients only through the losses, as Eq. 5 says).

    Deviations: the initial centres and the re-seeding come from a generator seeded by the run's seed (theirs: the
    global numpy / torch RNGs); K-means stops after 100 rounds if it has not converged (theirs has no cap; on T
    one-dimensional points it converges in a few); it runs on the CPU in float32 (as their ``X.float()``), one
    host sync a step on an accelerator. Their released code leaves the ``kmeans_pytorch`` import commented out,
    so as published it runs only K = 1; the K-means here is that library's (the paper's "standard K-means"). Their
    spectral and SDP clusterings (the paper's Table 5 ablations) are not here. No guard against a zero loss
    (theirs has none: P is then infinite)."""

    Args = GO4AlignArgs
    needs = Needs(every_task=True, single_process=True)   # Q accumulates this process's losses
    tol = 1e-4            # kmeans_pytorch's default tolerance on the squared total centre shift
    max_rounds = 100      # a cap theirs does not have

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        a = self.args
        if not 1 <= a.go4align_groups <= len(self.tasks):
            raise ConfigError(f"weighting_args.go4align_groups must be between 1 and the number of tasks "
                              f"({len(self.tasks)}), not {a.go4align_groups}")
        if a.go4align_beta < 0:
            raise ConfigError(f"weighting_args.go4align_beta must be >= 0, not {a.go4align_beta}")
        if a.go4align_scale not in ("sum", "mean"):
            raise ConfigError(f"weighting_args.go4align_scale must be sum or mean, not {a.go4align_scale!r}")

    def to(self, device):
        super().to(device)
        T = len(self.tasks)
        self.q = torch.full((T,), 1 / T, device=device)          # the smoothness vector Q
        self.w = torch.ones(T, device=device)                    # this step's task weights omega_{k(t)}
        self.groups = torch.zeros(T, dtype=torch.long)           # this step's group of each task
        self.gen = torch.Generator().manual_seed(self.seed)
        return self

    def indicators(self, L: torch.Tensor) -> torch.Tensor:
        """gamma = P * Q from this step's detached losses (Q updated first, as theirs)."""
        L = L.detach().float()
        scale = (L.sum() if self.args.go4align_scale == "sum" else L.mean()) / L
        self.q = self.q * torch.exp(-self.args.go4align_beta * L)
        self.q = self.q / self.q.sum()
        return scale * self.q

    def kmeans(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lloyd's algorithm on the T indicators (one dimension), as ``kmeans_pytorch.kmeans``: each task's
        cluster and the cluster centres."""
        K, T = self.args.go4align_groups, len(x)
        centres = x[torch.randperm(T, generator=self.gen)[:K]].clone()
        for _ in range(self.max_rounds):
            assign = torch.argmin((x[:, None] - centres[None, :]) ** 2, dim=1)   # the first centre on a tie
            before = centres.clone()
            for k in range(K):
                members = x[assign == k]
                if len(members) == 0:   # an empty cluster: re-seeded with a random indicator
                    members = x[torch.randint(T, (1,), generator=self.gen)]
                centres[k] = members.mean()
            if (centres - before).abs().sum() ** 2 < self.tol:
                break
        return assign, centres

    def combine(self, losses):
        L = self._stack(losses)
        gamma = self.indicators(L)
        if self.args.go4align_groups == 1:
            self.w = gamma.mean().expand_as(gamma)
        else:
            assign, centres = self.kmeans(gamma.cpu())
            self.groups = assign
            self.w = centres[assign].to(self.device, non_blocking=True)
        return (self.w.to(L.dtype) * L).sum()

    def weights(self):
        return self._per_task(self.w)
