"""Architectures that mix the tasks' activations on one input: cross-stitch networks and MTAN.

Both need every task to read the same tokens (one input group, e.g. CoNLL-2003 NER, POS and
chunking): a cross-stitch unit adds task B's activations to task A's token by token, and MTAN's
attention masks select from one shared feature pool. Tasks of different inputs have no common
tokens, so a run mixing input groups is refused when the model is built, with the reason.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .architectures import ARCHITECTURES, MultiTaskModel


def require_one_input(tasks, architecture: str, why: str) -> None:
    """Refuse tasks of several input groups, naming the reason and the tasks of each group."""
    groups: dict[str, list[str]] = {}
    for t in tasks:
        groups.setdefault(t.input_group, []).append(t.name)
    if len(groups) > 1:
        firsts = ", ".join(ts[0] for ts in groups.values())
        listed = "; ".join(f"{g}: {', '.join(ts)}" for g, ts in groups.items())
        raise ConfigError(
            f"architecture {architecture} {why}, so every task must read one input (one input group); tasks "
            f"{firsts} read different inputs (input groups {listed}). Train tasks of one input group (e.g. "
            f"conll2003, conll2003_pos, conll2003_chunk, as the tagging-* variants do), or an architecture that "
            f"shares across inputs (hard, mmoe, cgc, ple, dselect_k, ...)")


def one_input_group(factory):
    """Marks an architecture factory as needing one input group (``needs_one_input``)."""
    factory.one_input_group = True
    return factory


class CrossStitchModel(MultiTaskModel):
    """Cross-stitch networks (Misra, Shrivastava, Gupta & Hebert, "Cross-stitch Networks for Multi-task
    Learning", CVPR 2016): one trunk column per task; after every block a cross-stitch unit mixes the
    columns' activations, x~_t = sum_s alpha_ts * x_s, with alpha learned per channel (as in
    Vandenhende et al.'s reference implementation; the paper also discusses per-channel units) and
    initialised as the paper's (alpha_S, alpha_D) = (0.9, 0.1): 0.9 on a task's own column, 0.1
    spread evenly over the others. Each column ends with its own final norm, then its task's head.

    Every task's output depends on every column's blocks (through the units), so those and the units
    are shared parameters in ``parameter_split`` (as in LibMTL); a task owns its column's final norm
    and its head. All columns run
    once per batch of the group (``bodies``), whichever tasks are asked for.
    The paper trains the alphas with a 10^2-10^3x larger learning rate; here they use the run's (as
    every parameter does); they are stored flat so that AdamW's matrices-only decay leaves them alone.
    """

    def __init__(self, tasks, cfg, self_weight: float = 0.9):
        require_one_input(tasks, "cross_stitch", "mixes the tasks' activations on the same input")
        super().__init__(tasks, cfg, {t.name: t.name for t in tasks})
        T, d = len(tasks), cfg.dim
        init = torch.full((T, T), (1 - self_weight) / (T - 1)) if T > 1 else torch.zeros(T, T)
        init.fill_diagonal_(self_weight if T > 1 else 1.0)
        # alpha[j] of block j: (T, T, d) flat; [t, s] weighs column s's activations in column t's
        self.alpha = nn.ParameterList(nn.Parameter(init[:, :, None].expand(T, T, d).reshape(-1).clone())
                                      for _ in range(cfg.depth))
        self.T, self.dim = T, d

    def bodies(self, tasks, x, mask):
        columns = [self.trunks[t] for t in self.task_names]
        hs = [x] * self.T
        for j in range(len(self.alpha)):
            outs = torch.stack([c.blocks[j](h, mask) for c, h in zip(columns, hs, strict=True)])  # (T, B, N, d)
            a = self.alpha[j].view(self.T, self.T, self.dim)
            hs = list(torch.einsum("tsd,sbnd->tbnd", a.to(outs.dtype), outs).unbind(0))
        return {t: c.norm(h) for t, c, h in zip(self.task_names, columns, hs, strict=True) if t in tasks}

    def body(self, task, x, mask):
        return self.bodies([task], x, mask)[task]

    def body_key(self, task):
        return task

    def task_modules(self, task):
        return [self.stems[self.group_of[task]], *(c.blocks for c in self.trunks.values()), self.alpha,
                self.trunks[task].norm, self.heads[task]]


class TaskAttention(nn.Module):
    """MTAN's attention module, token-wise: 1x1 conv, BN, ReLU, 1x1 conv, BN, sigmoid becomes
    linear, LayerNorm, ReLU, linear, LayerNorm, sigmoid (LayerNorm: per token, so padding stays out)."""

    def __init__(self, d_in: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, dim), nn.LayerNorm(dim), nn.ReLU(),
                                 nn.Linear(dim, dim), nn.LayerNorm(dim), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MTANModel(MultiTaskModel):
    """Multi-Task Attention Network (Liu, Johns & Davison, "End-to-End Multi-Task Learning with
    Attention", CVPR 2019): one shared trunk (the global feature pool) and per task a soft-attention
    module at every block that masks the shared features: at block j,
    a_t^j = g_t^j([u^j, f^j(a^_t^{j-1})]) (just u^1 at the first block), a^_t^j = a_t^j * p^j,
    where p^j is the shared block's output, g a per-task attention module (``TaskAttention``, sigmoid
    mask) and f^j a layer shared by the tasks (linear, LayerNorm, ReLU: the paper's 3x3 conv + BN +
    ReLU, token-wise). A task's features are the shared trunk's final norm of a^_t at the last block.

    The paper's u^j is the output of the first layer inside block j; trunk blocks are single units
    here (a transformer or MLP block), so u^j is the block's input. The trunk runs once per batch of
    the group for all tasks (``bodies``). Shared: stem, trunk and the f layers; a task owns its
    attention modules and head.
    """

    def __init__(self, tasks, cfg):
        require_one_input(tasks, "mtan", "applies each task's attention masks to one shared feature pool of the "
                                         "tasks' common input")
        super().__init__(tasks, cfg, {t.name: "shared" for t in tasks})
        d, depth = cfg.dim, cfg.depth
        self.attention = nn.ModuleDict({
            t.name: nn.ModuleList(TaskAttention(d if j == 0 else 2 * d, d) for j in range(depth)) for t in tasks})
        self.shared_f = nn.ModuleList(nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.ReLU())
                                      for _ in range(max(depth - 1, 0)))

    def bodies(self, tasks, x, mask):
        trunk = self.trunks["shared"]
        attended: dict[str, torch.Tensor] = {}
        u = x
        for j, block in enumerate(trunk.blocks):
            p = block(u, mask)
            for t in tasks:
                inp = u if j == 0 else torch.cat([u, self.shared_f[j - 1](attended[t])], -1)
                attended[t] = self.attention[t][j](inp) * p
            u = p
        if not trunk.blocks:   # depth 0: nothing to attend to
            return {t: trunk.norm(x) for t in tasks}
        return {t: trunk.norm(attended[t]) for t in tasks}

    def body(self, task, x, mask):
        return self.bodies([task], x, mask)[task]

    def body_key(self, task):
        return task

    def task_modules(self, task):
        return [self.stems[self.group_of[task]], self.trunks["shared"], self.shared_f, self.attention[task],
                self.heads[task]]


@ARCHITECTURES.register("cross_stitch")
@one_input_group
def cross_stitch(tasks, cfg):
    """Cross-stitch networks (Misra et al. 2016): a column per task; one input group only.

    CVPR 2016: a trunk column per task, mixed after every block by learned cross-stitch units."""
    return CrossStitchModel(tasks, cfg)


@ARCHITECTURES.register("mtan")
@one_input_group
def mtan(tasks, cfg):
    """MTAN (Liu et al. 2019): shared trunk, per-task attention masks; one input group only.

    CVPR 2019: per-task soft-attention modules mask the shared trunk's features at every block."""
    return MTANModel(tasks, cfg)
