"""Raw rows -> tensors: decoded images, word ids of a vocabulary learned from train (with word shapes
and characters), or a pretrained tokenizer's sub-words."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from ..config import TaskConfig
from ..errors import ConfigError, DataError
from ..tasks import IGNORE, TaskSpec
from .types import MAX_WORD_CHARS, NUM_SHAPES, UNK, RawSplit, Split, TaskData


def decode_images(raw: RawSplit, column: str) -> torch.Tensor:
    """PNG/JPEG bytes -> uint8 (N, 3, H, W), read from the Arrow column at once."""
    from PIL import Image, UnidentifiedImageError

    col = raw.table.column(column).combine_chunks()
    blobs = col.field("bytes").to_pylist() if pa.types.is_struct(col.type) else col.to_pylist()
    images = []
    for i, blob in enumerate(blobs):
        try:
            img = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
        except (UnidentifiedImageError, OSError, TypeError, ValueError) as e:
            raise DataError(f"{raw.origin}: row {raw.rows[i]}: cannot decode image in column "
                            f"{column!r} ({type(e).__name__})") from None
        if images and img.shape != images[0].shape:
            raise DataError(f"{raw.origin}: row {raw.rows[i]}: image is {img.shape[1]}x{img.shape[0]}, "
                            f"the others {images[0].shape[1]}x{images[0].shape[0]}")
        images.append(img)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def word_shape(word: str) -> int:
    """1 lower, 2 Title, 3 UPPER, 4 has a digit, 5 anything else (punctuation...)."""
    if any(c.isdigit() for c in word):
        return 4
    if word.islower():
        return 1
    if word.isupper():
        return 3
    if word[:1].isupper():
        return 2
    return 5


def build_tokenizer(spec: TaskSpec, cfg: TaskConfig, train: RawSplit):
    """A WordLevel vocabulary (HF tokenizers) learned from the train split only."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    if spec.pretokenized:
        # words come split; map digits to 0 so numbers share ids
        tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex(r"\d"), "0")])
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Replace("<br />", " "), normalizers.NFKC(),
                                               normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_freq,
                                        special_tokens=["<pad>", "<unk>"], show_progress=False)
    texts = train.table.column(spec.columns["input"]).to_pylist()
    if spec.pretokenized:
        tok.train_from_iterator((w for words in texts for w in words), trainer)
    else:
        tok.train_from_iterator(texts, trainer)
    return tok


def clip(ids: list[int], max_len: int, how: str) -> list[int]:
    """Keep the head of a long text, or its head and tail (reviews often end with the verdict)."""
    if len(ids) <= max_len:
        return ids
    if how == "head":
        return ids[:max_len]
    if how == "head_tail":
        head = max_len // 2
        return ids[:head] + ids[len(ids) - (max_len - head):]
    raise ConfigError(f"unknown truncation {how!r}: use head or head_tail")


def build_char_vocab(spec: TaskSpec, train: RawSplit) -> dict[str, int]:
    """Characters of the train words, as they are (case kept: it is what tells entities apart),
    numbered from 2 in sorted order (0: <pad>, 1: <unk>)."""
    words = train.table.column(spec.columns["input"]).to_pylist()
    return {c: i + 2 for i, c in enumerate(sorted({c for ws in words for w in ws for c in w}))}


def tensorize_text(spec: TaskSpec, cfg: TaskConfig, raw: RawSplit, tok, with_gold: bool,
                   char_vocab: dict[str, int] | None = None) -> tuple[Split, int]:
    col, L = spec.columns["input"], cfg.max_len
    texts = raw.table.column(col).to_pylist()
    n = len(texts)
    ids = np.zeros((n, L), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    if not spec.pretokenized:
        truncated = 0
        for i, enc in enumerate(tok.encode_batch([t or "" for t in texts])):
            truncated += len(enc.ids) > L
            row = clip(enc.ids, L, cfg.truncate)
            ids[i, : len(row)] = row
            lengths[i] = max(len(row), 1)   # an empty review keeps one <pad>-free slot
            if not row:
                ids[i, 0] = UNK
        y = np.array(raw.table.column(spec.columns["label"]).to_pylist(), dtype=np.int64)
        return Split({"ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths),
                      "y": torch.from_numpy(y)}), truncated
    tags = raw.table.column(spec.columns["label"]).to_pylist()
    shapes = np.zeros((n, L), dtype=np.int64)
    target = np.full((n, L), IGNORE, dtype=np.int64)
    chars = np.zeros((n, L, MAX_WORD_CHARS), dtype=np.int16) if char_vocab is not None else None
    truncated = 0
    encs = tok.encode_batch([w if w else ["<unk>"] for w in texts], is_pretokenized=True)
    for i, (words, enc) in enumerate(zip(texts, encs, strict=True)):
        # first piece of each word: one id per word even if a word holds whitespace
        first = [UNK] * len(words)
        seen = set()
        for pos, w in enumerate(enc.word_ids):
            if w is not None and w not in seen:
                seen.add(w)
                first[w] = enc.ids[pos]
        k = min(len(words), L)
        truncated += len(words) > L
        ids[i, :k] = first[:k]
        shapes[i, :k] = [word_shape(w) for w in words[:k]]
        target[i, :k] = tags[i][:k]
        if chars is not None:
            for j, w in enumerate(words[:k]):
                cs = [char_vocab.get(c, UNK) for c in w[:MAX_WORD_CHARS]] or [UNK]
                chars[i, j, : len(cs)] = cs
        lengths[i] = max(k, 1)
        if k == 0:
            ids[i, 0] = UNK
    tensors = {"ids": torch.from_numpy(ids), "shape": torch.from_numpy(shapes),
               "lengths": torch.from_numpy(lengths), "y": torch.from_numpy(target)}
    if chars is not None:
        tensors["chars"] = torch.from_numpy(chars)
    return Split(tensors, [list(t) for t in tags] if with_gold else None), truncated


def first_subtoken_labels(word_ids: Sequence[int | None], tags: Sequence[int]) -> list[int]:
    """Word tags -> sub-token labels: a word's tag on its first sub-token, IGNORE on the others and
    on special tokens (``word_ids`` as a fast tokenizer's ``word_ids()`` gives them)."""
    out, prev = [], None
    for w in word_ids:
        out.append(IGNORE if w is None or w == prev else int(tags[w]))
        prev = w
    return out


def tensorize_subwords(spec: TaskSpec, cfg: TaskConfig, raw: RawSplit, tok, with_gold: bool) -> tuple[Split, int]:
    """Text -> a pretrained tokenizer's sub-word ids with its special tokens, ``max_len`` sub-tokens
    at most. Tagging labels sit on each word's first sub-token (the others are IGNORE), so the
    labelled positions of a row are its words, in order: that is how predictions go back to words."""
    col, L = spec.columns["input"], cfg.max_len
    texts = raw.table.column(col).to_pylist()
    n, pad = len(texts), tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = np.full((n, L), pad, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    truncated = 0
    prefix, suffix = special_frame(tok)
    room = L - len(prefix) - len(suffix)
    if room < 1:
        raise ConfigError(f"{spec.name}: max_len {L} leaves no room beside {L - room} special tokens")
    if not spec.pretokenized:
        pieces = tok([(t or "").replace("<br />", " ") for t in texts], add_special_tokens=False)["input_ids"]
        for i, row in enumerate(pieces):
            truncated += len(row) > room
            row = prefix + clip(row, room, cfg.truncate) + suffix
            ids[i, : len(row)], lengths[i] = row, len(row)
        y = np.array(raw.table.column(spec.columns["label"]).to_pylist(), dtype=np.int64)
        return Split({"ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths),
                      "y": torch.from_numpy(y)}), truncated
    tags = raw.table.column(spec.columns["label"]).to_pylist()
    # a word the tokenizer drops entirely (a stray control character) becomes its unknown token,
    # so that every word keeps a first sub-token and a prediction
    empty = {w for w in {w for ws in texts for w in ws} if not tok.tokenize(w)}   # each distinct word once
    words = [[tok.unk_token if w in empty else w for w in ws] or [tok.unk_token] for ws in texts]
    enc = tok(words, is_split_into_words=True, truncation=True, max_length=L)
    target = np.full((n, L), IGNORE, dtype=np.int64)
    for i in range(n):
        row, labels = enc["input_ids"][i], first_subtoken_labels(enc.word_ids(i), tags[i] or [0])
        ids[i, : len(row)], target[i, : len(row)], lengths[i] = row, labels, len(row)
        truncated += sum(lab != IGNORE for lab in labels) < len(tags[i])
    tensors = {"ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths), "y": torch.from_numpy(target)}
    return Split(tensors, [list(t) for t in tags] if with_gold else None), truncated


def special_frame(tok) -> tuple[list[int], list[int]]:
    """The special ids a tokenizer puts before and after one text ([CLS] / [SEP] for BERT, <s> /
    </s> for RoBERTa), read off an encoding: generic tokenizers have no method that adds them to
    ids cut by hand (the head+tail cut of long reviews)."""
    framed = tok("a", add_special_tokens=True)["input_ids"]
    bare = tok("a", add_special_tokens=False)["input_ids"]
    for start in range(len(framed) - len(bare) + 1):
        if framed[start:start + len(bare)] == bare:
            return framed[:start], framed[start + len(bare):]
    raise ConfigError(f"cannot tell the special tokens of tokenizer {type(tok).__name__}: {framed} vs {bare}")


def tensorize(spec: TaskSpec, cfg: TaskConfig, raws: dict[str, RawSplit], subwords=None,
              chars: bool = False) -> TaskData:
    """Tensors of every split: images, word ids of a vocabulary learned from train (with ``chars``,
    also each word's character ids, for tasks whose words are given), or with ``subwords`` (a
    pretrained fast tokenizer) its sub-word ids."""
    if spec.input == "image":
        splits = {}
        for name, raw in raws.items():
            y = np.array(raw.table.column(spec.columns["label"]).to_pylist(), dtype=np.int64)
            splits[name] = Split({"x": decode_images(raw, spec.columns["input"]), "y": torch.from_numpy(y)})
        return TaskData(spec.name, splits, raws["train"].origin)
    splits, truncated = {}, {}
    if subwords is not None:
        for name, raw in raws.items():
            splits[name], truncated[name] = tensorize_subwords(spec, cfg, raw, subwords, with_gold=name != "train")
        return TaskData(spec.name, splits, raws["train"].origin, vocab_size=len(subwords), truncated=truncated)
    tok = build_tokenizer(spec, cfg, raws["train"])
    char_vocab = build_char_vocab(spec, raws["train"]) if chars and spec.pretokenized else None
    for name, raw in raws.items():
        splits[name], truncated[name] = tensorize_text(spec, cfg, raw, tok, name != "train", char_vocab)
    return TaskData(spec.name, splits, raws["train"].origin, vocab_size=tok.get_vocab_size(),
                    num_shapes=NUM_SHAPES if spec.pretokenized else 0, truncated=truncated,
                    num_chars=len(char_vocab) + 2 if char_vocab is not None else 0)
