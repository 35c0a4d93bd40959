"""Expert mixtures beyond MMoE: CGC and PLE (task-specific + shared experts), DSelect-k (a sparse,
differentiable gate). Like ``mmoe`` they mix expert trunks *per token* on (B, N, d) tokens, so they
work for tasks of any input type and for tasks of different input groups (whose batches never meet).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from .architectures import ARCHITECTURES, MultiTaskModel
from .trunk import Trunk, build_trunk


def mix(gate_logits: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    """Softmax over the experts per token: (B, N, E) logits, E outputs (B, N, d) -> (B, N, d)."""
    g = torch.softmax(gate_logits, dim=-1)
    return (torch.stack(outs, -1) * g.unsqueeze(-2)).sum(-1)


def level_trunk(cfg, level: int) -> Trunk:
    """Block ``level`` of a trunk of ``cfg`` (its own stochastic-depth rate), as a one-block trunk."""
    return Trunk(cfg.dim, [build_trunk(cfg).blocks[level]])


class PLEModel(MultiTaskModel):
    """Progressive Layered Extraction (Tang et al., "Progressive Layered Extraction (PLE): A Novel
    Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

    Each extraction level j has ``model.experts`` shared experts and ``model.task_experts`` experts
    per task. Task k's output of level j mixes its own experts and the shared ones with its gate,
    per token (softmax): g^{k,j} = softmax(W^{k,j} g^{k,j-1}) [E^{k,j}(g^{k,j-1}), E^{s,j}(g^{s,j-1})];
    below the last level a shared gate mixes *all* experts of the level into the shared path
    g^{s,j}, read by the next level's shared experts. The last level's task outputs feed the heads.

    Input groups: tasks of different groups never share a batch, so the shared path is computed on
    one group's tokens at a time, and its gate at level j mixes the shared experts with the experts
    of the tasks *of that group* (a shared gate per group and level; with one input group, e.g. the
    tagging tasks, exactly the paper's; a task alone in its group owns its shared gate).

    ``levels`` lists the experts' trunk depth per level: ``ple`` has ``model.depth`` levels of one
    block each (the paper's experts are one layer per level), ``cgc`` one level of full trunks.
    """

    def __init__(self, tasks, cfg, levels: int):
        super().__init__(tasks, cfg, {t.name: t.name for t in tasks})
        if cfg.experts < 1 or cfg.task_experts < 0 or cfg.experts + cfg.task_experts < 1:
            raise ConfigError(f"cgc/ple need model.experts >= 1 shared experts and model.task_experts >= 0, "
                              f"got {cfg.experts} and {cfg.task_experts}")
        if levels < 1:
            raise ConfigError("ple needs at least one extraction level: model.depth >= 1")
        self.levels = levels

        def expert(j):
            return build_trunk(cfg) if levels == 1 else level_trunk(cfg, j)

        names = [t.name for t in tasks]
        self.tasks_of_group = {g: [t for t in names if self.group_of[t] == g]
                               for g in dict.fromkeys(self.group_of.values())}
        n_s, n_t = cfg.experts, cfg.task_experts
        # experts[level]["shared" | "task"][...]: every expert trunk (trunks, so GradNorm finds the shared ones)
        self.trunks = nn.ModuleDict({
            "shared": nn.ModuleList(nn.ModuleList(expert(j) for _ in range(n_s)) for j in range(levels)),
            "task": nn.ModuleDict({t: nn.ModuleList(nn.ModuleList(expert(j) for _ in range(n_t)) for j in range(levels))
                                   for t in names})})
        self.gates = nn.ModuleDict({t: nn.ModuleList(nn.Linear(cfg.dim, n_t + n_s) for _ in range(levels))
                                    for t in names})
        self.shared_gates = nn.ModuleDict({
            g: nn.ModuleList(nn.Linear(cfg.dim, n_s + n_t * len(ts)) for _ in range(levels - 1))
            for g, ts in self.tasks_of_group.items()})

    def bodies(self, tasks, x, mask):
        """The whole group's paths, level by level (the shared gate reads every task's experts)."""
        group, last = self.group_of[tasks[0]], self.levels - 1
        members = self.tasks_of_group[group]
        shared, own = x, dict.fromkeys(members, x)
        for j in range(self.levels):
            active = members if j < last else list(tasks)   # below the last level the shared gate reads all
            s_out = [e(shared, mask) for e in self.trunks["shared"][j]]
            t_out = {t: [e(own[t], mask) for e in self.trunks["task"][t][j]] for t in active}
            own = {t: mix(self.gates[t][j](own[t]), t_out[t] + s_out) for t in active}
            if j < last:   # the shared path the next level's shared experts read
                shared = mix(self.shared_gates[group][j](shared), s_out + [o for t in members for o in t_out[t]])
        return {t: own[t] for t in tasks}

    def body(self, task, x, mask):
        return self.bodies([task], x, mask)[task]

    def body_key(self, task):
        return task

    def task_modules(self, task):
        """Task k reaches: every level's shared experts and its own experts and gates; below the last
        level, its group's shared gates and its group's other tasks' experts (through the shared path),
        and those tasks' gates below the last two levels (their inputs to those experts)."""
        group, last = self.group_of[task], self.levels - 1
        mods: list[nn.Module] = [self.stems[group], self.heads[task], self.trunks["shared"],
                                 self.trunks["task"][task], self.gates[task], *self.shared_gates[group]]
        for u in self.tasks_of_group[group]:
            if u != task:
                mods += [*self.trunks["task"][u][:last], *self.gates[u][:max(last - 1, 0)]]
        return mods


@ARCHITECTURES.register("cgc")
def cgc(tasks, cfg):
    """Customized Gate Control (Tang et al. 2020): shared + task-specific experts, a gate per task.

    The PLE paper's single level (RecSys 2020): model.experts shared and model.task_experts own expert
    trunks per task, mixed per token by the task's softmax gate."""
    return PLEModel(tasks, cfg, levels=1)


@ARCHITECTURES.register("ple")
def ple(tasks, cfg):
    """Progressive Layered Extraction (Tang et al. 2020): model.depth stacked CGC levels.

    RecSys 2020: each level's experts are one trunk block; below the last level a shared gate (per
    input group) mixes all the level's experts into the shared path."""
    return PLEModel(tasks, cfg, levels=cfg.depth)


# ---------------------------------------------------------------- DSelect-k

def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Hazimeh et al. 2020's smooth step: 0 below -gamma/2, 1 above gamma/2, and the cubic
    -2/gamma^3 t^3 + 3/(2 gamma) t + 1/2 between (continuously differentiable)."""
    cubic = -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


def binary_codes(n: int) -> torch.Tensor:
    """(n, m) bits of 0..n-1, most significant first, m = ceil(log2 n)."""
    m = max(math.ceil(math.log2(n)), 0)
    return torch.tensor([[(i >> (m - 1 - b)) & 1 for b in range(m)] for i in range(n)], dtype=torch.bool)


def dselect_weights(z: torch.Tensor, alpha: torch.Tensor, gamma: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DSelect-k's gate (Hazimeh et al., NeurIPS 2021, eq. 5-6): ``z`` (..., k, m) selector logits and
    ``alpha`` (..., k) selector weights' logits -> (expert weights (..., n), selector outputs (..., k, n)).

    Selector i puts r_l = prod_b S(z_ib)^[bit b of l] (1 - S(z_ib))^[1 - bit b of l] on expert l;
    the gate is sum_i softmax(alpha)_i r(z_i). With n a power of 2 each selector's r sums to 1, so
    the weights do; otherwise the codes past n-1 are unreachable and the weights sum to at most 1."""
    codes = binary_codes(n).to(z.device)                           # (n, m)
    s = smooth_step(z, gamma).unsqueeze(-2)                        # (..., k, 1, m)
    r = torch.where(codes, s, 1 - s).prod(-1)                      # (..., k, n)
    w = torch.softmax(alpha, dim=-1).unsqueeze(-1)                 # (..., k, 1)
    return (w * r).sum(-2), r


class _AddRegulariser(torch.autograd.Function):
    """``x`` unchanged; backward also sends gradient 1 into ``reg``, as if ``reg`` were added to the
    loss. The gate's regularisers ride on the output they belong to, so they reach the gradient
    exactly when (and as often as) that output does, whatever combines the task losses, and no
    graph is kept between steps (the DeepSeek-MoE auxiliary-loss device)."""

    @staticmethod
    def forward(ctx, x, reg):
        ctx.reg_dtype = reg.dtype
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, torch.ones((), dtype=ctx.reg_dtype, device=grad.device)


class DSelectKModel(MultiTaskModel):
    """DSelect-k (Hazimeh et al., "DSelect-k: Differentiable Selection in the Mixture of Experts with
    Applications to Multi-Task Learning", NeurIPS 2021): ``model.experts`` shared expert trunks; each
    task mixes them per token with its own *per-example* (here per-token) DSelect-k gate of
    ``model.dselect_k`` single-expert selectors: z = W_z x (k x m smooth-step bits, m = ceil(log2 n)),
    alpha = W_a x, weights = sum_i softmax(alpha)_i r(z_i) (``dselect_weights``). At most k experts
    get weight on a token once the smooth steps saturate (|z| >= gamma/2).

    As the official code: z's layer starts in U(-gamma/100, gamma/100) (every selector near uniform),
    alpha's in U(-0.05, 0.05); with n not a power of 2 a regulariser sum_i 1 / sum_l r_il keeps the
    selectors off the unreachable codes; ``model.dselect_entropy`` > 0 adds lambda x the selectors'
    entropy. Both are averaged over real tokens (the official code sums over examples; a mean keeps
    their scale that of the task losses, which are means) and added to the loss through the task's
    output (``_AddRegulariser``)."""

    def __init__(self, tasks, cfg):
        super().__init__(tasks, cfg, {t.name: "expert0" for t in tasks})
        n, k = cfg.experts, cfg.dselect_k
        if n < 2 or k < 1 or cfg.dselect_gamma <= 0:
            raise ConfigError(f"dselect_k selects among model.experts >= 2 experts with model.dselect_k >= 1 "
                              f"selectors and model.dselect_gamma > 0; got {n}, {k}, {cfg.dselect_gamma}")
        self.n, self.k, self.m = n, k, math.ceil(math.log2(n))
        self.gamma, self.entropy = cfg.dselect_gamma, cfg.dselect_entropy
        self.trunks = nn.ModuleDict({f"expert{i}": build_trunk(cfg) for i in range(n)})
        self.z_gates = nn.ModuleDict({t.name: nn.Linear(cfg.dim, k * self.m) for t in tasks})
        self.alpha_gates = nn.ModuleDict({t.name: nn.Linear(cfg.dim, k) for t in tasks})
        for t in tasks:
            for p in self.z_gates[t.name].parameters():
                nn.init.uniform_(p, -self.gamma / 100, self.gamma / 100)
            for p in self.alpha_gates[t.name].parameters():
                nn.init.uniform_(p, -0.05, 0.05)

    def gate(self, task: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(expert weights (B, N, n), selector outputs (B, N, k, n)) of a task's gate on tokens x."""
        z = self.z_gates[task](x).unflatten(-1, (self.k, self.m))
        return dselect_weights(z, self.alpha_gates[task](x), self.gamma, self.n)

    def regulariser(self, r: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        """Per token: the unreachable-code term (n not a power of 2) + entropy; mean over real tokens."""
        terms = []
        if self.n != 2**self.m:
            terms.append((1 / r.sum(-1).clamp_min(1e-6)).sum(-1))
        if self.entropy > 0:
            terms.append(-self.entropy * (r * torch.log(r + 1e-6)).sum((-2, -1)))
        if not terms:
            return None
        per_token = sum(terms)
        if mask is None:
            return per_token.mean()
        m = mask.to(per_token.dtype)
        return (per_token * m).sum() / m.sum().clamp_min(1.0)

    def body(self, task, x, mask):
        weights, r = self.gate(task, x)
        outs = torch.stack([e(x, mask) for e in self.trunks.values()], -1)   # (B, N, d, n)
        y = (outs * weights.unsqueeze(-2)).sum(-1)
        if self.training and torch.is_grad_enabled():
            reg = self.regulariser(r, mask)
            if reg is not None:
                y = _AddRegulariser.apply(y, reg)
        return y

    def body_key(self, task):
        return task

    def task_modules(self, task):
        return [self.stems[self.group_of[task]], *self.trunks.values(), self.z_gates[task],
                self.alpha_gates[task], self.heads[task]]


@ARCHITECTURES.register("dselect_k")
def dselect_k(tasks, cfg):
    """DSelect-k (Hazimeh et al. 2021): shared experts, a differentiable top-k gate per task.

    NeurIPS 2021: per token, model.dselect_k smooth-step binary selectors over model.experts trunks."""
    return DSelectKModel(tasks, cfg)

