"""Auto-Lambda (Liu, James, Davison & Johns, TMLR 2022): task weights meta-learned by a look-ahead."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .base import WEIGHTINGS, Lookahead, Needs, Weighting


@dataclass
class AutoLambdaArgs:
    autol_init: float = 0.1       # initial task weights (the paper's 0.1)
    autol_lr: float = 1e-4        # Adam lr of the task weights (the official code's 1e-4 for NYUv2; 3e-5 for
                                  # CityScapes)


@WEIGHTINGS.register("auto_lambda")
class AutoLambda(Weighting):
    """Auto-Lambda (Liu, James, Davison & Johns, TMLR 2022): task weights lambda meta-learned so that a
    step on sum_t lambda_t L_t lowers the primary tasks' loss on another batch.

    Paper: "Auto-Lambda: Disentangling Dynamic Task Relationships" (official code: lorenmt/auto-lambda).
    Each step, before the real update:

    1. virtual step theta' = theta - alpha (grad_theta sum_t lambda_t L_t(theta) + wd theta), alpha the
       run's current learning rate (the paper's first-order SGD look-ahead);
    2. the primary tasks' loss L_val(theta') = sum_{t primary} L_t(theta') on a second, independent batch,
       and its gradient d = grad_theta' L_val;
    3. grad_lambda_t = -alpha d . grad_theta L_t(theta), by the paper's central finite difference:
       -alpha (L_t(theta + eps d) - L_t(theta - eps d)) / (2 eps), eps = 0.01 / ||d||, on the step's batch;
    4. one Adam step on lambda (lr ``autol_lr``, init ``autol_init``: the paper's 1e-4 and 0.1); then the
       real update on sum_t lambda_t L_t.

    Primary tasks are every task in multi-task learning, the main tasks with auxiliary ones (the
    paper's auxiliary-learning mode): an auxiliary task keeps the weight that helps the main tasks.

    As the official code: the "validation" batch is a second shuffle of the *training* data (its own
    stream here), so the validation split stays for checkpoint selection only; the virtual step is a
    plain SGD step with the optimizer's weight decay (the official code adds SGD's momentum buffer; with
    AdamW, as here, it adds none); lambda is not constrained. Where this differs: the parameters are
    perturbed and restored in place (no model copy), and the look-ahead forwards leave normalisation
    statistics as they were (the official code lets its theta +- eps d forwards update them). Cost: four
    extra forward passes and two extra backward passes a step (the official code's too).
    """

    Args = AutoLambdaArgs
    needs = Needs(every_task=True, single_process=True,   # lambda's meta-gradient: this process's batches
                  second_stream=True)

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        if self.args.autol_lr <= 0:
            raise ConfigError(f"weighting_args.autol_lr must be positive, not {self.args.autol_lr}")

    def to(self, device):
        super().to(device)
        self.lam = torch.full((len(self.tasks),), float(self.args.autol_init), device=device, requires_grad=True)
        self.meta_opt = torch.optim.Adam([self.lam], lr=self.args.autol_lr)
        return self

    def combine(self, losses):
        return (self.lam.detach() * self._stack(losses)).sum()

    def backward(self, step):
        losses, ahead = step.losses(), step.lookahead()
        extra = step.extra()
        model = step.model
        self.meta_step(losses, model, extra, ahead)
        # the look-ahead moved the parameters in place (and back), which invalidates the step's graph:
        # the real update takes a fresh forward pass at theta, as the official code does
        with torch.enable_grad():
            losses = ahead.losses_of(ahead.batches)
            extra = None if extra is None else model.extra_loss()
        total = self.combine(losses)
        (total if extra is None else total + extra).backward()
        return total.detach()

    def meta_step(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None,
                  ahead: Lookahead) -> None:
        """Steps 1-4 of the docstring: the meta-gradient of lambda, then its Adam step."""
        params = [p for p in model.parameters() if p.requires_grad]
        buffers = [b.detach().clone() for b in model.buffers()]
        theta = [p.detach().clone() for p in params]
        alpha = ahead.lr
        total = self.combine(losses)
        grads = torch.autograd.grad(total if extra is None else total + extra, params, allow_unused=True)
        with torch.no_grad():   # 1. theta'
            for p, g in zip(params, grads, strict=True):
                p.sub_(alpha * ((0 if g is None else g) + ahead.weight_decay.get(id(p), 0.0) * p))
        with torch.enable_grad():   # 2. the primary tasks' loss after the virtual step, on the other batch
            val = ahead.losses_of(ahead.meta_batches)
            d = torch.autograd.grad(sum(val[t] for t in ahead.primary), params, allow_unused=True)
        d = [torch.zeros_like(p) if g is None else g for p, g in zip(params, d, strict=True)]
        eps = 0.01 / torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in d])).clamp_min(1e-12)
        ends = []
        with torch.no_grad():   # 3. the step's task losses at theta + eps d and theta - eps d
            for sign in (1.0, -1.0):
                for p, t, g in zip(params, theta, d, strict=True):
                    p.copy_(t + sign * eps * g)
                ends.append(self._stack(ahead.losses_of(ahead.batches)))
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)
            for b, kept in zip(model.buffers(), buffers, strict=True):
                b.copy_(kept)
        self.meta_opt.zero_grad()
        self.lam.grad = -alpha * (ends[0] - ends[1]).float() / (2 * eps)
        self.meta_opt.step()   # 4.

    def weights(self):
        return self._per_task(self.lam.detach())
