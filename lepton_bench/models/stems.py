"""Stems turn one input type into a sequence of d-wide tokens (+ a key-padding mask).

They are what the Lepton articles call modality encoders. Each task has its own stem
(its own vocabulary, its own image statistics); sharing starts at the trunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import ConvNormAct, trunc_normal_
from torch import nn

from ..registry import Registry

# CIFAR-10 channel statistics (train split), in [0, 1] units.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class ImageStem(nn.Module):
    """uint8 image (B, 3, H, W) -> normalize -> ``body`` (each of its ``stages`` halves H and W)
    -> 1x1 projection to d -> (B, h*w, d) tokens + learned positions. Subclasses give the body."""

    def __init__(self, dim: int, body: nn.Module, width: int, stages: int, image_size: int,
                 mean=CIFAR_MEAN, std=CIFAR_STD, dropout: float = 0.0):
        super().__init__()
        side = image_size // 2 ** stages
        if side < 1:
            raise ValueError(f"{stages} stages shrink a {image_size}px image to nothing")
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        self.body = body
        self.proj = nn.Conv2d(width, dim, 1)
        self.pos = nn.Parameter(torch.zeros(1, side * side, dim))
        trunc_normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        x = (batch["x"].float() - self.mean) / self.std
        x = self.proj(self.body(x))                   # (B, d, h, w)
        x = x.flatten(2).transpose(1, 2) + self.pos   # (B, h*w, d)
        return self.drop(x), None


class ConvStem(ImageStem):
    """Each stage is conv -> 2x max-pool -> conv (airbench's layout: pooling right after the
    first conv keeps the second conv 4x cheaper)."""

    def __init__(self, dim: int, widths: tuple[int, ...], image_size: int = 32, dropout: float = 0.0):
        stages, c_in = [], 3
        for w in widths:
            stages += [ConvNormAct(c_in, w, 3, act_layer=nn.GELU), nn.MaxPool2d(2),
                       ConvNormAct(w, w, 3, act_layer=nn.GELU)]
            c_in = w
        super().__init__(dim, nn.Sequential(*stages), c_in, len(widths), image_size, dropout=dropout)


class ResNetStem(ImageStem):
    """A small ResNet: a 3x3 conv, then one timm ``BasicBlock`` per width with stride 2 (1x1
    strided shortcut)."""

    def __init__(self, dim: int, widths: tuple[int, ...], image_size: int = 32, dropout: float = 0.0):
        from timm.models.resnet import BasicBlock, downsample_conv

        c_in = widths[0]
        blocks: list[nn.Module] = [ConvNormAct(3, c_in, 3, act_layer=nn.ReLU)]
        for w in widths:
            blocks.append(BasicBlock(c_in, w, stride=2,
                                     downsample=downsample_conv(c_in, w, 1, stride=2, norm_layer=nn.BatchNorm2d)))
            c_in = w
        super().__init__(dim, nn.Sequential(*blocks), c_in, len(widths), image_size, dropout=dropout)


class WordEmbedding(nn.Module):
    """Word ids (B, L) -> (B, L, d) embeddings (+ a word-shape embedding) and the mask of real
    tokens (id 0 is <pad>): what every text stem starts with."""

    def __init__(self, dim: int, vocab_size: int, num_shapes: int = 0):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.shape = nn.Embedding(num_shapes, dim, padding_idx=0) if num_shapes else None
        trunc_normal_(self.tok.weight, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch["ids"]
        x = self.tok(ids)
        if self.shape is not None:
            x = x + self.shape(batch["shape"])
        return x, ids != 0


class EmbeddingStem(nn.Module):
    """Word (+ shape) embedding + learned positions."""

    def __init__(self, dim: int, vocab_size: int, max_len: int, num_shapes: int = 0, dropout: float = 0.0):
        super().__init__()
        self.words = WordEmbedding(dim, vocab_size, num_shapes)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        trunc_normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.words(batch)
        return self.drop(x + self.pos[:, : x.shape[1]]), mask


class BiLSTMStem(nn.Module):
    """Word (+ shape) embedding -> one bidirectional LSTM layer (d/2 per direction), over packed
    sequences so padding never enters the recurrence."""

    def __init__(self, dim: int, vocab_size: int, num_shapes: int = 0, dropout: float = 0.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"bilstm needs an even model.dim (d/2 per direction), got {dim}")
        self.words = WordEmbedding(dim, vocab_size, num_shapes)
        self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.words(batch)
        # packing needs host lengths: the batch carries them (no device sync); else count them
        lengths = batch.get("host_lengths")
        lengths = (mask.sum(1).cpu() if lengths is None else lengths).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.drop(out), mask


# ---------------------------------------------------------------- the stem registry

@dataclass(frozen=True)
class Stem:
    """A registered stem: the input types it reads and how to build it for one task."""

    name: str
    inputs: tuple[str, ...]                       # "image", "text"
    build: Callable[[Any, Any], nn.Module]        # (TaskIO, ModelConfig) -> module
    help: str = ""


STEMS: Registry[Stem] = Registry("stem")
DEFAULT_STEMS = {"image": "conv", "text": "embedding"}   # a task's stem unless model.stems names one


def register_stem(name: str, inputs: tuple[str, ...], help: str):
    """Decorator: register ``build(io, cfg) -> nn.Module`` as stem ``name`` for ``inputs``."""

    def add(build):
        STEMS.register(name, Stem(name, inputs, build, help), help=help)
        return build

    return add


@register_stem("conv", ("image",), "conv -> pool -> conv stages (timm ConvNormAct) to a grid of d-wide tokens")
def _conv(io, cfg) -> nn.Module:
    return ConvStem(cfg.dim, cfg.image_widths, io.image_size, dropout=cfg.dropout)


@register_stem("embedding", ("text",), "word embedding + learned positions (+ word-shape embedding)")
def _embedding(io, cfg) -> nn.Module:
    shapes = io.num_shapes if cfg.case_feature else 0
    return EmbeddingStem(cfg.dim, io.vocab_size, io.max_len, shapes, dropout=cfg.dropout)


@register_stem("cnn", ("image",), "small ResNet: 3x3 conv, then a timm BasicBlock per width (stride 2), to tokens")
def _cnn(io, cfg) -> nn.Module:
    return ResNetStem(cfg.dim, cfg.image_widths, io.image_size, dropout=cfg.dropout)


@register_stem("bilstm", ("text",), "word embedding (+ word shape) -> bidirectional LSTM, d/2 per direction")
def _bilstm(io, cfg) -> nn.Module:
    return BiLSTMStem(cfg.dim, io.vocab_size, io.num_shapes if cfg.case_feature else 0, dropout=cfg.dropout)
