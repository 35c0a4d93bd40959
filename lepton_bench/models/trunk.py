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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                adapters: nn.ModuleList | None = None) -> torch.Tensor:
        # A boolean (B, 1, 1, N) key-padding mask, True = attend, goes straight to SDPA.
        attn_mask = None if mask is None else mask[:, None, None, :]
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask=attn_mask)
            if adapters is not None:
                x = adapters[i](x)
        return self.norm(x)


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
