"""STCH: smooth Tchebycheff scalarization (Lin et al., ICML 2024), as the authors' MTL code runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs, Weighting
from .preference import preference_vector


@dataclass
class STCHArgs:
    stch_mu: float = 1.0          # smoothing mu of the log-sum-exp (-> 0: the Tchebycheff max); the authors' 1
    stch_form: str = "official"   # "official": the authors' MTL code (log-ratios to a nadir after a warm-up,
                                  # x T); "paper": the paper's equation on the raw losses, z = 0
    stch_warmup_steps: int = 40   # official: steps on sum_t log L_t before the nadir is measured (the authors
                                  # warm up 4 of 200 epochs: 2% of the default 2,000 steps)
    stch_nadir_steps: int = 10    # official: the next steps, also on sum_t log L_t, whose mean losses are the
                                  # nadir (the authors' 5th epoch of 200: 0.5%)
    stch_preference: dict[str, float] = field(default_factory=dict)   # task -> preference (missing 1),
                                  # normalised onto the simplex (x T in the official form); unset: equal


@WEIGHTINGS.register("stch")
class SmoothTchebycheff(Weighting):
    """Smooth Tchebycheff (Lin et al., ICML 2024): mu log sum_t exp(lambda_t f_t / mu).

    Paper: "Smooth Tchebycheff Scalarization for Multi-Objective Optimization". Default
    (``stch_form=official``): the authors' MTL code (Xi-L/STCH ``STCH_MTL/LibMTL/weighting/STCH.py``, line for
    line LibMTL's), which produced the paper's MTL tables: for the first ``stch_warmup_steps`` +
    ``stch_nadir_steps`` steps the loss is sum_t log L_t; the mean detached losses of the last
    ``stch_nadir_steps`` of them are the nadir z; from then on T mu log sum_t exp(lambda_t log(L_t / z_t) / mu)
    with lambda = 1 (``stch_preference`` x T, equal by default). The authors count the warm-up in epochs
    (4, then 1 for the nadir, of 200): here it is in steps, at those proportions of the default budget.

    ``stch_form=paper``: the paper's equation on the raw losses, z = 0 (the losses' infimum), lambda on the
    simplex, no warm-up, no log, no factor T. Each task's weight is d total / d L_t (``weights``)."""

    Args = STCHArgs
    revision = 2                  # 1: the paper's form was the default
    needs = Needs(every_task=True)   # a max over the tasks needs every task's loss

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        a = self.args
        if a.stch_mu <= 0:
            raise ConfigError(f"weighting_args.stch_mu must be positive, not {a.stch_mu}")
        if a.stch_form not in ("official", "paper"):
            raise ConfigError(f"weighting_args.stch_form must be official or paper, not {a.stch_form!r}")
        if a.stch_warmup_steps < 0 or a.stch_nadir_steps < 1:
            raise ConfigError(f"weighting_args.stch_warmup_steps must be >= 0 and stch_nadir_steps >= 1, not "
                              f"{a.stch_warmup_steps}, {a.stch_nadir_steps}")
        self.preference = preference_vector("stch_preference", self.tasks, a.stch_preference)
        if a.stch_form == "official":
            self.preference = self.preference * len(self.tasks)   # the authors' lambda = 1 at equal preference

    def to(self, device):
        super().to(device)
        self.preference = self.preference.to(device)
        self.k = 0                                        # steps seen
        self.nadir_sum = torch.zeros(len(self.tasks), device=device)
        self.nadir = None
        self.w = self.preference.clone()   # d total / d L_t of the last step
        return self

    def combine(self, losses):
        L = self._stack(losses)
        total = self._official(L) if self.args.stch_form == "official" else self._paper(L)
        if L.requires_grad:   # d total / d L_t: each task's weight this step (for the records)
            self.w = torch.autograd.grad(total, L, retain_graph=True)[0].detach()
        return total

    def _paper(self, L):
        mu = self.args.stch_mu
        return mu * torch.logsumexp(self.preference * L / mu, dim=0)

    def _official(self, L):
        a = self.args
        self.k += 1
        if self.k <= a.stch_warmup_steps + a.stch_nadir_steps:
            if self.k > a.stch_warmup_steps:   # the nadir steps: their mean detached losses
                self.nadir_sum += L.detach()
            return torch.log(L + 1e-20).sum()
        if self.nadir is None:
            self.nadir = self.nadir_sum / a.stch_nadir_steps
        mu = a.stch_mu
        ratios = self.preference * torch.log(L / self.nadir + 1e-20)   # lambda_t = T p_t: 1 at equal
        return len(self.tasks) * mu * torch.logsumexp(ratios / mu, dim=0)

    def weights(self):
        return self._per_task(self.w)
