"""Trunks: what the tasks share. A registry kind (``list trunks``), chosen by ``model.trunk``.

``transformer`` (the default) is a stack of timm ViT blocks over the stems' tokens; ``mlp`` is
the Lepton articles' "shared layer": a residual token-wise MLP over the encoders' outputs, with
no mixing between tokens (the CNN and LSTM stems have already done that).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.layers import DropPath, Mlp
from timm.models.vision_transformer import Block
from torch import nn

from ..registry import Registry


class Trunk(nn.Module):
    """``blocks`` in turn (an optional per-task adapter after each), then a LayerNorm."""

    def __init__(self, dim: int, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                adapters: nn.ModuleList | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, mask)
            if adapters is not None:
                x = adapters[i](x)
        return self.norm(x)


class AttentionBlock(Block):
    """timm's pre-norm ViT block, fed the key-padding mask."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # A boolean (B, 1, 1, N) key-padding mask, True = attend, goes straight to SDPA.
        return super().forward(x, attn_mask=None if mask is None else mask[:, None, None, :])


class MLPBlock(nn.Module):
    """x + DropPath(MLP(LN(x))): every token on its own, so padding cannot leak into real tokens."""

    def __init__(self, dim: int, mlp_ratio: float, dropout: float, drop_path: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.norm(x)))


def _drop_rates(cfg) -> list[float]:
    """Stochastic depth rising linearly to ``drop_path`` over the blocks."""
    return torch.linspace(0, cfg.drop_path, cfg.depth).tolist() if cfg.depth else []


TRUNKS: Registry[Callable[[object], Trunk]] = Registry("trunk")


@TRUNKS.register("transformer")
def transformer(cfg) -> Trunk:
    """model.depth timm ViT blocks (self-attention + MLP) over the tokens of a task."""
    return Trunk(cfg.dim, [AttentionBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, qkv_bias=True,
                                          proj_drop=cfg.dropout, drop_path=r) for r in _drop_rates(cfg)])


@TRUNKS.register("mlp")
def mlp(cfg) -> Trunk:
    """The articles' shared layer: model.depth residual token-wise MLP blocks (no attention)."""
    return Trunk(cfg.dim, [MLPBlock(cfg.dim, cfg.mlp_ratio, cfg.dropout, r) for r in _drop_rates(cfg)])


def build_trunk(cfg) -> Trunk:
    return TRUNKS.get(cfg.trunk)(cfg)


class Adapter(nn.Module):
    """Bottleneck adapter (Houlsby et al., ICML 2019): x + up(GELU(down(LN(x)))), starting as identity."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.nn.functional.gelu(self.down(self.norm(x))))
