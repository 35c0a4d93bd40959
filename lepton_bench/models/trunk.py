"""The trunk: a stack of timm transformer blocks over tokens. This is the 'shared layer'."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn


class Trunk(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        rates = torch.linspace(0, drop_path, depth).tolist() if depth else []
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, qkv_bias=True, proj_drop=dropout, drop_path=r)
            for r in rates)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # A boolean (B, 1, 1, N) key-padding mask, True = attend, goes straight to SDPA.
        attn_mask = None if mask is None else mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.norm(x)
