"""Heads: one per task, on top of the trunk's tokens."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """Mean of the real (non-pad) tokens -> linear -> class logits (B, C)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            pooled = x.mean(1)
        else:
            m = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.fc(pooled)


class TaggingHead(nn.Module):
    """Linear on every token -> tag logits (B, L, C); the loss ignores pad positions."""

    def __init__(self, dim: int, num_tags: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_tags)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.fc(x)
