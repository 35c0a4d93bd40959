"""FAMO: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import WEIGHTINGS, Needs, Weighting


@dataclass
class FAMOArgs:
    famo_lr: float = 0.025        # Adam lr of the task logits xi
    famo_decay: float = 1e-3      # weight decay gamma of the task logits


@WEIGHTINGS.register("famo")
class FAMO(Weighting):
    """Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023). Weights z = softmax(xi);
    the step minimises sum_t z_t log L_t (scaled by c = 1 / sum_t z_t / L_t). After the update,
    xi moves (Adam, lr ``famo_lr``, decay ``famo_decay``) to favour the tasks whose log-loss fell
    least: grad xi = J_softmax^T (log L_t(before) - log L_t(after)), losses on the same batch."""

    Args = FAMOArgs
    needs = Needs(every_task=True, single_process=True)
    eps = 1e-8

    def to(self, device):
        super().to(device)
        self.xi = torch.zeros(len(self.tasks), device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.xi], lr=self.args.famo_lr, weight_decay=self.args.famo_decay)
        self.prev: torch.Tensor | None = None
        return self

    def combine(self, losses):
        L = self._stack(losses)
        self.prev = L.detach()
        z = torch.softmax(self.xi.detach(), dim=0)
        D = L + self.eps
        c = (z / D).sum().detach()
        return (torch.log(D) * z / c).sum()

    def after_step(self, step):
        if self.prev is None:
            return
        after = step.losses_after()   # the same batches after the update, label smoothing included
        delta = torch.log(self.prev + self.eps) - torch.log(self._stack(after).detach() + self.eps)
        with torch.enable_grad():
            z = torch.softmax(self.xi, dim=0)
            (grad,) = torch.autograd.grad(z, self.xi, grad_outputs=delta)
        self.opt.zero_grad()
        self.xi.grad = grad
        self.opt.step()

    def weights(self):
        return self._per_task(torch.softmax(self.xi.detach(), 0))
