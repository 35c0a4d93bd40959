"""FORUM (Ye, Lin, Cao, Zhang & Tsang, ECAI 2024): task weights as the upper level of a multi-objective
bi-level problem, solved first-order through its value-function constraint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .base import WEIGHTINGS, Lookahead, Needs, Weighting


@dataclass
class FORUMArgs:
    forum_rho: float = 0.1        # rho (LibMTL's FORUM_phi): the share of ||grad q||^2 the update must cut q by
    forum_inner_lr: float = 0.1   # eta: the lower level's SGD step (the authors' NYUv2 / Office commands; QM9 0.01)
    forum_inner_steps: int = 5    # T: SGD steps from omega to omega^T, the value function's estimate
    forum_outer_lr: float = 1e-3  # Adam lr of alpha (hard-coded in the authors' code; LibMTL's --outer_lr)
    forum_epoch_steps: int = 50   # steps per "epoch" of lambda's rate 1 / (epoch + 1)^(3/4) (theirs: a pass
                                  # over the data, 26 steps on Office-31 and 99 on NYUv2 at their batch sizes)
    forum_upper: str = "all"      # the upper level's objectives: "all" tasks (the authors'), or the "main" ones
                                  # (with auxiliary tasks, as Auto-Lambda's primary tasks)


def _flat(grads, params: list[torch.Tensor]) -> torch.Tensor:
    """One vector of the gradients of ``params`` (zeros where a parameter was not reached)."""
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params, strict=True)])


@WEIGHTINGS.register("forum")
class FORUM(Weighting):
    """FORUM (Ye, Lin, Cao, Zhang & Tsang, ECAI 2024): the lower level trains the model omega on
    f(alpha, omega) = sum_t softmax(alpha)_t L_t, the upper level asks every task's loss F_t(omega) on
    another batch to fall; the bi-level problem becomes min F s.t. q = f(alpha, omega) - min_w f(alpha, w) <= 0,
    with min_w f estimated by T SGD steps, and one multi-gradient step moves alpha and omega together.

    Paper: "A First-Order Multi-Gradient Algorithm for Multi-Objective Bi-Level Optimization" (arXiv
    2401.09257). As the authors' code (Baijiong-Lin/FORUM ``LibMTL/trainer.py``, ``Trainer.train_FORUM``;
    the same in LibMTL ``Trainer.bacth_forward_FORUM``), each step:

    1. g_f = grad_(alpha, omega) f(alpha, omega) on the step's batch (the lower-level batch);
    2. omega^T: T = ``forum_inner_steps`` (5) SGD steps of lr eta = ``forum_inner_lr`` (0.1, no decay) on f from
       omega, on the same batch (stopped early when f > 1e5); grad q = g_f - (grad_alpha f(alpha, omega^T), 0);
    3. on a second, independent training batch (the upper-level batch): each objective's gradient
       g_t = grad_omega F_t(omega), normalised to g_t / (||g_t|| + 1e-8) (its alpha part is 0);
    4. pi_t = rho - <grad q, g_t> / (||grad q||^2 + 1e-8), rho = ``forum_rho`` (0.1); the QP (their problem 14,
       cvxpy) min_{w >= 0} ||sum_t w_t g_t + w_q grad q||^2 - w_q rho (||grad q||^2 + 1e-8) s.t. sum_t w_t = 1,
       w_q >= sum_t w_t pi_t;
    5. lambda <- lambda + (w - lambda) / (e + 1)^(3/4) (from 0; e the epoch, counted from 0: lambda = w in the
       first); nu = max(sum_t lambda_t pi_t, 0);
    6. the update d = sum_t lambda_t g_t + nu grad q: its omega part is the model's gradient (every trained
       parameter, shared and task-specific: the run's optimizer steps it), its alpha part nu (grad_alpha f(omega)
       - grad_alpha f(omega^T)) alpha's, for one Adam step (``forum_outer_lr`` 1e-3; alpha from 1/T each).

    ``weights()`` are the lower level's softmax(alpha); ``lam`` and ``nu`` the last step's upper-level ones.

    Where this differs from the authors' code, and why: (a) the two batches: theirs are two consecutive
    half-size batches of one shuffle (the configured batch size halved); here the lower level takes the step's
    batch and the upper level a batch of the same size from a second stream of the training data (Auto-Lambda's,
    ``Setup.meta_streams``): to give each level their batch, set each task's batch_size to half of theirs;
    (b) the epoch of lambda's rate is ``forum_epoch_steps`` steps (a method does not know the run's epoch);
    (c) the inner steps move the parameters in place and put them back (no model copy), normalisation
    statistics restored as theirs are (their copy's were discarded); (d) the QP's matrix square root by ``eigh``
    (theirs: ``eig`` and an inverse, the same for the symmetric Gramian), its problem built once and re-solved;
    (e) a failed solve keeps lambda (theirs would stop), and non-finite Gramian entries reach the solver as 0
    while the update keeps them, so the run's check names the task; (f) the model's regulariser (soft sharing)
    stays out of both levels, its gradient added to the update. Cost: T + 3 forward passes (the last without
    a graph) and T + 1 + (objectives) backward passes a step, and one small QP on the host.
    """

    Args = FORUMArgs
    needs = Needs(every_task=True, single_process=True,   # alpha and lambda from this process's batches
                  second_stream=True)                     # the upper level's batch

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        a = self.args
        if a.forum_rho < 0 or a.forum_inner_lr <= 0 or a.forum_outer_lr <= 0:
            raise ConfigError(f"weighting_args: forum_rho must be >= 0 and forum_inner_lr, forum_outer_lr positive, "
                              f"not {a.forum_rho}, {a.forum_inner_lr}, {a.forum_outer_lr}")
        if a.forum_inner_steps < 1 or a.forum_epoch_steps < 1:
            raise ConfigError(f"weighting_args: forum_inner_steps and forum_epoch_steps must be at least 1, not "
                              f"{a.forum_inner_steps}, {a.forum_epoch_steps}")
        if a.forum_upper not in ("all", "main"):
            raise ConfigError(f"weighting_args.forum_upper must be all or main, not {a.forum_upper!r}")

    def to(self, device):
        super().to(device)
        T = len(self.tasks)
        self.alpha = torch.full((T,), 1 / T, device=device, requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.alpha], lr=self.args.forum_outer_lr)
        self.k = 0                            # steps taken
        self.lam: np.ndarray | None = None    # lambda over the upper-level objectives (zeros before the first)
        self.nu = 0.0
        self.last_w: np.ndarray | None = None   # the last QP solution (w_1..w_n, w_q)
        self._qp = None
        return self

    def combine(self, losses):
        return (torch.softmax(self.alpha.detach(), 0) * self._stack(losses)).sum()

    def backward(self, step):
        losses, ahead = step.losses(), step.lookahead()
        extra = step.extra()
        model = step.model
        params = [p for p in model.parameters() if p.requires_grad]
        upper = self.tasks if self.args.forum_upper == "all" else [t for t in self.tasks if t in ahead.primary]
        self.k += 1
        # 1. g_f on the lower-level batch (the step's)
        with torch.enable_grad():
            f = (torch.softmax(self.alpha, 0) * self._stack(losses)).sum()
            grads = torch.autograd.grad(f, [self.alpha, *params], allow_unused=True, retain_graph=extra is not None)
            extra_grads = None if extra is None else torch.autograd.grad(extra, params, allow_unused=True)
        gf_alpha, gf_omega = grads[0], _flat(grads[1:], params)
        # 3. the upper level's normalised gradients, on the second batch (before the inner steps move omega)
        with torch.enable_grad():
            val = ahead.losses_of(ahead.meta_batches)
            rows = []
            for i, t in enumerate(upper):
                g = _flat(torch.autograd.grad(val[t], params, retain_graph=i < len(upper) - 1, allow_unused=True),
                          params)
                rows.append(g / (torch.linalg.vector_norm(g) + 1e-8))
        GF = torch.stack(rows)
        # 2. grad q
        gq_alpha = gf_alpha - self.value_gradient(model, params, ahead)
        gq_omega = gf_omega
        # 4. pi and the QP
        gq2 = gq_alpha.square().sum() + gq_omega.square().sum()
        dots = GF @ gq_omega   # the rows' alpha part is 0
        rho = self.args.forum_rho
        pi = rho - dots / (gq2 + 1e-8)
        gram = torch.cat([torch.cat([GF @ GF.T, dots[:, None]], 1),
                          torch.cat([dots, gq2[None]])[None]], 0).detach().double().cpu().numpy()
        pi_host = pi.detach().double().cpu().numpy()
        gram, pi_host = np.nan_to_num(gram, nan=0.0, posinf=0.0, neginf=0.0), \
            np.nan_to_num(pi_host, nan=0.0, posinf=0.0, neginf=0.0)
        c = rho * (float(gram[-1, -1]) + 1e-8)
        w = self.solve(gram, pi_host, c)
        # 5. lambda's moving average and nu
        if self.lam is None:
            self.lam = np.zeros(len(upper))
        if w is not None:
            self.last_w = w
            epoch = (self.k - 1) // self.args.forum_epoch_steps
            self.lam = self.lam + (w[:-1] - self.lam) / (epoch + 1) ** 0.75
        self.nu = max(float(self.lam @ pi_host), 0.0)
        # 6. the update
        lam = torch.as_tensor(self.lam, dtype=GF.dtype, device=GF.device)
        update = lam @ GF + self.nu * gq_omega
        offset = 0
        for i, p in enumerate(params):
            p.grad = update[offset:offset + p.numel()].view_as(p).clone()
            if extra_grads is not None and extra_grads[i] is not None:
                p.grad += extra_grads[i]
            offset += p.numel()
        self.alpha_opt.zero_grad()
        self.alpha.grad = self.nu * gq_alpha
        self.alpha_opt.step()
        return f.detach()

    def value_gradient(self, model: nn.Module, params: list[torch.Tensor], ahead: Lookahead) -> torch.Tensor:
        """grad_alpha f(alpha, omega^T), omega^T by the inner SGD steps on the lower-level batch; the
        parameters and buffers are put back as they were."""
        theta = [p.detach().clone() for p in params]
        buffers = [b.detach().clone() for b in model.buffers()]
        w = torch.softmax(self.alpha.detach(), 0)
        eta = self.args.forum_inner_lr
        for _ in range(self.args.forum_inner_steps):
            with torch.enable_grad():
                loss = (w * self._stack(ahead.losses_of(ahead.batches))).sum()
                if loss.item() > 1e5:   # the authors' guard against a too large eta or T
                    break
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    if g is not None:
                        p.sub_(eta * g)
        with torch.no_grad():
            L = self._stack(ahead.losses_of(ahead.batches)).float()
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)
            for b, kept in zip(model.buffers(), buffers, strict=True):
                b.copy_(kept)
        with torch.enable_grad():
            (g,) = torch.autograd.grad((torch.softmax(self.alpha, 0) * L).sum(), self.alpha)
        return g

    def solve(self, gram: np.ndarray, pi: np.ndarray, c: float) -> np.ndarray | None:
        """The QP of step 4 by cvxpy (the authors' solver), as theirs: ||G^(1/2) w||^2 with G^(1/2) from the
        Gramian's eigen-decomposition (negative eigenvalues clipped to 0). None when the solve fails."""
        import cvxpy as cp

        n = len(pi)
        if self._qp is None:
            root, p, cc = cp.Parameter((n + 1, n + 1)), cp.Parameter(n), cp.Parameter(nonneg=True)
            w = cp.Variable(n + 1, nonneg=True)
            problem = cp.Problem(cp.Minimize(cp.quad_over_lin(root @ w, 1) - cc * w[-1]),
                                 [cp.sum(w[:-1]) == 1, w[-1] >= p @ w[:-1]])
            self._qp = (problem, root, p, cc, w)
        problem, root, p, cc, w = self._qp
        vals, vecs = np.linalg.eigh((gram + gram.T) / 2)
        root.value = vecs @ np.diag(np.sqrt(np.maximum(vals, 0))) @ vecs.T
        p.value, cc.value = pi, max(c, 0.0)
        try:
            problem.solve()
        except cp.error.SolverError:
            return None
        return None if w.value is None else np.asarray(w.value, dtype=np.float64)

    def weights(self):
        return self._per_task(torch.softmax(self.alpha.detach(), 0))
