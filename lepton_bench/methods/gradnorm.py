"""GradNorm (Chen et al., ICML 2018): weights that balance the tasks' gradient norms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .base import WEIGHTINGS, Needs, Weighting


@dataclass
class GradNormArgs:
    gradnorm_alpha: float = 1.5   # asymmetry alpha
    gradnorm_lr: float = 0.025    # Adam lr of the task weights


@WEIGHTINGS.register("gradnorm")
class GradNorm(Weighting):
    """GradNorm (Chen et al., ICML 2018): learn weights w_t so that the gradient norms
    G_t = ||grad_W w_t L_t|| on the last shared layer W approach mean(G) * r_t^alpha, with
    r_t = (L_t/L_t(0)) / mean(L/L(0)) each task's relative inverse training rate. The weights
    are renormalised to sum to T after each update."""

    Args = GradNormArgs
    needs = Needs(every_task=True, single_process=True)

    def to(self, device):
        super().to(device)
        self.w = torch.ones(len(self.tasks), device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.w], lr=self.args.gradnorm_lr)
        self.L0: torch.Tensor | None = None
        return self

    def check(self, model):
        if not model.parameter_split()[0]:
            raise ConfigError("gradnorm needs shared parameters; this architecture has none")

    def combine(self, losses):
        return (self.w.detach() * self._stack(losses)).sum()

    def targets(self, L: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """mean(G) * r_t^alpha, detached: the gradient norm each task should have."""
        if self.L0 is None:
            self.L0 = L.detach()
        ratio = L.detach() / self.L0
        return (G.mean() * (ratio / ratio.mean()) ** self.args.gradnorm_alpha).detach()

    def update(self, L: torch.Tensor, grad_norms: torch.Tensor) -> None:
        """One GradNorm step on w from the unweighted gradient norms ||grad_W L_t||."""
        with torch.enable_grad():
            G = self.w * grad_norms
            target = self.targets(L, G.detach())
            (grad,) = torch.autograd.grad((G - target).abs().sum(), self.w)
        self.opt.zero_grad()
        self.w.grad = grad
        self.opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.tasks) / self.w.sum())

    def backward(self, step):
        losses = step.losses()
        ordered = self._ordered(losses)   # each loss's own graph, not a row of a stack (see below)
        L = torch.stack(ordered)
        W = last_shared_weight(step.model)
        norms = torch.stack([torch.autograd.grad(loss, W, retain_graph=True)[0].norm() for loss in ordered])
        total = self.combine(losses)   # uses the weights before this step's update
        extra = step.extra()
        (total if extra is None else total + extra).backward()
        self.update(L, norms)
        return total.detach()

    def weights(self):
        return self._per_task(self.w.detach())


def last_shared_weight(model: nn.Module) -> torch.Tensor:
    """The last shared weight matrix (GradNorm's W): the shared trunk's final MLP projection. A stem
    shared by an input group is shared too, but not every task reaches it (its gradient is zero for
    the tasks of other groups), so the trunk's matrices come first; a shared stem's only without one."""
    shared = [p for p in model.parameter_split()[0] if p.ndim == 2]
    ids = {id(p) for p in shared}
    in_trunk = [p for p in model.trunks.parameters() if id(p) in ids]
    if not shared:
        raise ConfigError("this architecture has no shared weight matrix")
    return (in_trunk or shared)[-1]
