"""MOML (Ye, Lin, Yue, Guo, Xiao & Zhang, NeurIPS 2021; AIJ 2024): loss weights by a multi-objective bilevel step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from .base import WEIGHTINGS, Lookahead, Needs, Weighting


@dataclass
class MOMLArgs:
    moml_inner_lr: float = 1e-4   # eta, the virtual (lower-level) SGD step's size (the authors' NeurIPS code, NYUv2
                                  # and Office; LibMTL's --inner_lr default 0.1)
    moml_outer_lr: float = 1e-3   # Adam lr of the weights' logits (the authors' Office code = LibMTL's --outer_lr
                                  # default; their NYUv2 code: 1e-4)
    moml_normalize: str = "l2"    # each objective's hypergradient divided by its "l2" norm, its outer "loss", "loss+"
                                  # (both) or "none", before MGDA (the authors' Office code and LibMTL's trainer: l2;
                                  # their NYUv2 code loss)
    moml_form: str = "original"   # the upper-level update: "original" sum_t sol_t * (raw hypergradient_t), sol from
                                  # the normalised ones (the authors' NeurIPS repository, Baijiong-Lin/MOML, which
                                  # ran the published numbers); "libmtl" sum_t sol_t * (normalised hypergradient_t)
                                  # (LibMTL's trainer; with moml_inner_lr=0.1, its default)
    moml_upper: str = "all"       # the upper level's objectives: every task's outer loss ("all": LibMTL's and the
                                  # authors'), or the "main" ones only (with auxiliary tasks, as Auto-Lambda's primary)


@WEIGHTINGS.register("moml")
class MOML(Weighting):
    """MOML (Ye et al., NeurIPS 2021; AIJ 2024): w = softmax(alpha), alpha learned so that one SGD step on
    sum_t w_t L_t lowers every task's loss on another batch, the tasks' hypergradients combined by MGDA.

    Paper: "Multi-Objective Meta Learning" (a multi-objective bilevel problem: lower level the weighted
    training loss, upper level one objective per task, their alpha-gradients combined by the min-norm point).
    Default: the authors' NeurIPS code (Baijiong-Lin/MOML, ``MTL/moml_office.py``, which ran the published
    numbers; its Office settings, the classification experiment) — the update of step 5 below along the raw
    hypergradients, eta 1e-4. ``moml_form=libmtl`` (with ``moml_inner_lr=0.1``, its default): LibMTL's
    implementation (median-research-group/LibMTL, ``LibMTL/trainer.py``, ``Trainer.bacth_forward_MOML``, with
    ``inner_step=1``, the only value it allows; by the paper's second author). Each step, with s =
    softmax(alpha) (alpha initialised to 1/T: s uniform):

    1. G_f: each task's gradient of its loss on the step's batch w.r.t. every trainable parameter (T rows);
    2. virtual step theta' = theta - eta s^T G_f (plain SGD, no weight decay, eta = ``moml_inner_lr``);
    3. each upper-level objective's loss F_p(theta') on a second, independent batch and its gradient g_p
       (p: every task, or with ``moml_upper=main`` the main ones);
    4. hypergradient h_p = dF_p(theta'(alpha))/d alpha = -eta g_p^T G_f^T J, J = diag(s) - s s^T (the softmax's
       Jacobian): exact for one step, since G_f does not depend on alpha;
    5. rows divided by their l2 norm (``moml_normalize``), MGDA's min-norm weights sol on them (Sener & Koltun's
       Frank-Wolfe solver, LibMTL's ``MGDA._find_min_norm_element``: 250 iterations, 1e-5 stop; its 2-task
       answer clipped to [0.001, 0.999]); alpha's gradient sum_p sol_p h_p (``libmtl``: sum_p sol_p h_p / |h_p|);
       one Adam step on alpha (``moml_outer_lr``);
    6. the real update: the gradient of sum_t s_t L_t with the new s (on the heads too).

    The authors' NeurIPS repository (``MTL/moml_office.py`` and ``moml_nyu.py`` with ``--MGDA``) computes h_p
    by backprop through a ``create_graph`` virtual step (the same h_p) and steps alpha along the raw
    hypergradients; LibMTL along the normalised ones. The authors' settings: eta 1e-4, Adam 1e-3 (Office;
    NYUv2 1e-4 and ``moml_normalize=loss``). With two tasks the forms part: both rows
    lie along (1, -1), so where they disagree LibMTL's normalised min-norm point is 0 (alpha holds) and the
    original moves alpha by their sol-weighted sum.

    Mapped onto this framework (the deviations): LibMTL draws three batches a step, two independent
    half-size training batches (inner, outer) and a full one for the real update; here the inner batch is
    the step's own batch, the outer one a full-size draw of the second stream (as ``auto_lambda``), and the
    real update reuses the step's batch and its G_f (sum_t s_t G_f,t is that update's gradient, exactly:
    no third forward pass). An exact match would need half-size draws from both streams and a third,
    independent stream for the update. The original's outer batch is the validation split and its real
    update the train+val split: here both are training draws (the validation split selects checkpoints).
    With auxiliary tasks, ``moml_upper=main`` keeps the upper-level objectives to the main tasks (the lower
    level weighs every task either way); the default, every task, is the authors' (who ran no auxiliary
    tasks). The model's own regulariser (soft sharing, gates) joins the virtual and the real update, unweighted.
    The look-ahead moves the parameters in place and puts them and the normalisation statistics back
    (LibMTL: a deep copy of the model). A hypergradient row of norm 0 (or a loss of 0 under ``loss``
    normalisation) stays unscaled, and non-finite entries are 0 to the solver (LibMTL would divide by 0 or
    stop on NaN); a non-finite task loss still reaches the gradients and the combined loss. The T x T solve
    runs on the host in float64 (one device sync a step; LibMTL's runs in float32 on the device: the same
    weights to 1e-10 when run in float64). One inner step, as both codes (the paper's algorithm allows K,
    backpropagated through the K steps: not offered). Cost: two forward passes and 2T backward passes a
    step (LibMTL's: three and 2T + 1)."""

    Args = MOMLArgs
    needs = Needs(every_task=True, single_process=True,   # alpha's hypergradient: this process's batches
                  second_stream=True)

    def __init__(self, tasks, args=None, seed=0):
        super().__init__(tasks, args, seed)
        a = self.args
        if not a.moml_inner_lr > 0 or not a.moml_outer_lr > 0:
            raise ConfigError(f"weighting_args.moml_inner_lr and moml_outer_lr must be positive, not "
                              f"{a.moml_inner_lr} and {a.moml_outer_lr}")
        if a.moml_normalize not in ("l2", "loss", "loss+", "none"):
            raise ConfigError(f"weighting_args.moml_normalize must be l2, loss, loss+ or none, "
                              f"not {a.moml_normalize!r}")
        if a.moml_form not in ("libmtl", "original"):
            raise ConfigError(f"weighting_args.moml_form must be libmtl or original, not {a.moml_form!r}")
        if a.moml_upper not in ("all", "main"):
            raise ConfigError(f"weighting_args.moml_upper must be all or main, not {a.moml_upper!r}")

    def to(self, device):
        super().to(device)
        self.alpha = torch.full((len(self.tasks),), 1 / len(self.tasks), device=device, requires_grad=True)
        self.meta_opt = torch.optim.Adam([self.alpha], lr=self.args.moml_outer_lr)
        self.sol: np.ndarray | None = None     # the last step's MGDA weights of the upper level's objectives
        self.hyper: np.ndarray | None = None   # and their hypergradients h_p (rows, before normalisation)
        return self

    def combine(self, losses):
        return (torch.softmax(self.alpha.detach(), -1) * self._stack(losses)).sum()

    def backward(self, step):
        L = self._ordered(step.losses())
        extra = step.extra()
        ahead = step.lookahead()
        model = step.model
        params = [p for p in model.parameters() if p.requires_grad]
        Gf = torch.stack([self._flat(torch.autograd.grad(loss, params, allow_unused=True,
                                                         retain_graph=i < len(L) - 1 or extra is not None), params)
                          for i, loss in enumerate(L)])   # 1. T x d
        g_extra = None if extra is None else self._flat(torch.autograd.grad(extra, params, allow_unused=True), params)
        self.meta_step(Gf, g_extra, params, model, ahead)
        s = torch.softmax(self.alpha.detach(), -1)
        update = s.to(Gf) @ Gf   # 6. the gradient of sum_t s_t L_t (the new s) on the step's batch
        if g_extra is not None:
            update = update + g_extra
        offset = 0
        for p in params:
            g = update[offset:offset + p.numel()].view_as(p).to(p.dtype)
            p.grad = g.clone() if p.grad is None else p.grad + g
            offset += p.numel()
        return (s * torch.stack(L).to(s)).sum().detach()

    @staticmethod
    def _flat(grads, params) -> torch.Tensor:
        return torch.cat([(torch.zeros_like(p) if g is None else g).flatten().float()
                          for g, p in zip(grads, params, strict=True)])

    def meta_step(self, Gf: torch.Tensor, g_extra: torch.Tensor | None, params: list[torch.Tensor],
                  model: torch.nn.Module, ahead: Lookahead) -> None:
        """Steps 2-5 of the docstring: the virtual step, the objectives' hypergradients, MGDA, Adam on alpha."""
        eta = self.args.moml_inner_lr
        s = torch.softmax(self.alpha.detach(), -1).float()
        theta = [p.detach().clone() for p in params]
        buffers = [b.detach().clone() for b in model.buffers()]
        v = s @ Gf if g_extra is None else s @ Gf + g_extra
        with torch.no_grad():   # 2. theta'
            offset = 0
            for p in params:
                p.sub_((eta * v[offset:offset + p.numel()]).view_as(p).to(p.dtype))
                offset += p.numel()
        upper = self.tasks if self.args.moml_upper == "all" else [t for t in self.tasks if t in ahead.primary]
        with torch.enable_grad():   # 3. the upper level's losses after the virtual step, on the second batch
            val = ahead.losses_of(ahead.meta_batches)
            rows = [Gf @ self._flat(torch.autograd.grad(val[t], params, allow_unused=True,
                                                        retain_graph=i < len(upper) - 1), params)
                    for i, t in enumerate(upper)]   # g_p^T G_f^T, one row per upper-level objective
            F = torch.stack([val[t].detach().float() for t in upper])
        with torch.no_grad():
            for p, kept in zip(params, theta, strict=True):
                p.copy_(kept)
            for b, kept in zip(model.buffers(), buffers, strict=True):
                b.copy_(kept)
        J = torch.diag(s) - torch.outer(s, s)
        H = -eta * torch.stack(rows) @ J   # 4. P x T
        host = torch.cat([H.flatten(), F]).double().cpu().numpy()   # the one host sync
        H, F = host[:H.numel()].reshape(H.shape), host[H.numel():]
        self.hyper = H
        direction = self.combine_hypergradients(H, F)
        self.meta_opt.zero_grad()
        self.alpha.grad = torch.as_tensor(direction, dtype=self.alpha.dtype, device=self.alpha.device)
        self.meta_opt.step()   # 5.

    def combine_hypergradients(self, H: np.ndarray, F: np.ndarray) -> np.ndarray:
        """Alpha's gradient from the objectives' hypergradients H (rows) and their outer losses F (step 5)."""
        H = np.where(np.isfinite(H), H, 0.0)
        norms = np.sqrt((H ** 2).sum(1))
        F = np.where(np.isfinite(F), F, 0.0)
        kind = self.args.moml_normalize
        gn = norms if kind == "l2" else F if kind == "loss" else F * norms if kind == "loss+" else np.ones_like(F)
        gn = np.where(gn > 0, gn, 1.0)
        normed = H / gn[:, None]
        self.sol = min_norm_element(normed @ normed.T)
        return self.sol @ (normed if self.args.moml_form == "libmtl" else H)

    def weights(self):
        return self._per_task(torch.softmax(self.alpha.detach(), -1))


def min_norm_element(gram: np.ndarray, max_iter: int = 250, stop: float = 1e-5) -> np.ndarray:
    """The min-norm point of the convex hull of vectors with Gramian ``gram``: its weights on the simplex.
    Sener & Koltun's solver as LibMTL's ``MGDA._find_min_norm_element`` (and the authors' ``min_norm_solvers``):
    the best pair in closed form (clipped to [0.001, 0.999]), then Frank-Wolfe steps; one vector: weight 1."""
    n = len(gram)
    if n == 1:
        return np.ones(1)

    def from2(v1v1, v1v2, v2v2):
        if v1v2 >= v1v1:
            return 0.999, v1v1
        if v1v2 >= v2v2:
            return 0.001, v2v2
        gamma = -1.0 * ((v1v2 - v2v2) / (v1v1 + v2v2 - 2 * v1v2))
        return gamma, v2v2 + gamma * (v1v2 - v2v2)

    dmin, best = np.inf, (0, 1, 0.5)   # LibMTL starts at 1e8 (and fails where every pair costs more)
    for i in range(n):
        for j in range(i + 1, n):
            c, d = from2(gram[i, i], gram[i, j], gram[j, j])
            if d < dmin:
                dmin, best = d, (i, j, c)
    sol = np.zeros(n)
    sol[best[0]], sol[best[1]] = best[2], 1 - best[2]
    if n < 3:
        return sol

    def projection(y):
        sorted_y = np.sort(y)[::-1]
        tmpsum, tmax_f = 0.0, (y.sum() - 1.0) / n
        for i in range(n - 1):
            tmpsum += sorted_y[i]
            tmax = (tmpsum - 1) / (i + 1.0)
            if tmax > sorted_y[i + 1]:
                tmax_f = tmax
                break
        return np.maximum(y - tmax_f, 0.0)

    def next_point(cur, grad):
        proj = grad - grad.sum() / n
        neg, pos = proj < 0, proj > 0
        tm1 = -1.0 * cur[neg] / proj[neg]
        tm2 = (1.0 - cur[pos]) / proj[pos]
        t = 1.0
        if (tm1 > 1e-7).sum() > 0:
            t = tm1[tm1 > 1e-7].min()
        if (tm2 > 1e-7).sum() > 0:
            t = min(t, tm2[tm2 > 1e-7].min())
        return projection(proj * t + cur)

    for _ in range(max_iter):
        new = next_point(sol, -1.0 * gram @ sol)
        nc, _ = from2(sol @ gram @ sol, sol @ gram @ new, new @ gram @ new)
        new_sol = nc * sol + (1 - nc) * new
        if np.abs(new_sol - sol).sum() < stop:
            return sol
        sol = new_sol
    return sol
