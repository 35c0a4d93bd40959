"""Load, check, split, tensorize and cache the tasks' data; feed batches on the device.

Sources: each task's ``Dataset`` (``tasks.py``): its Hub id by default, or its folder
``DIR/<folder>/`` in the Hub's parquet layout (``--data-dir`` / ``LEPTON_BENCH_DATA``);
tasks of one dataset read one folder. Local parquet files are read with
pyarrow directly: ``datasets.load_dataset(<folder>)`` caches by folder *name*, so a
64-row slice and the full mirror in two folders called ``imdb`` would share a cache
entry. Our own tensor cache is keyed by file paths + sizes + mtimes instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .config import TaskConfig, data_settings
from .errors import ConfigError, DataError
from .tasks import IGNORE, TaskSpec

CACHE_FORMAT = 1          # bump when the tensorized layout changes
PAD, UNK = 0, 1           # word ids of <pad> and <unk>
NUM_SHAPES = 6            # word shapes: pad, lower, Title, UPPER, has-digit, other
MAX_WORD_CHARS = 16      # characters kept per word for character features (longer words: their first 16)
SPLITS = ("train", "validation", "test")


def default_cache_dir() -> Path:
    return Path(os.environ.get("LEPTON_BENCH_CACHE", Path.home() / ".cache" / "lepton_bench"))


@dataclass
class Split:
    """One tensorized split. ``tensors`` share their first dimension (examples)."""

    tensors: dict[str, torch.Tensor]
    gold: list[list[int]] | None = None   # tagging: full gold tags per sentence (no truncation)

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def to(self, device: torch.device) -> Split:
        return Split({k: v.to(device) for k, v in self.tensors.items()}, self.gold)


@dataclass
class TaskData:
    name: str
    splits: dict[str, Split]
    source: str                    # where it came from, for records and errors
    vocab_size: int = 0
    num_shapes: int = 0
    truncated: dict[str, int] = field(default_factory=dict)  # split -> examples cut at max_len
    num_chars: int = 0             # character ids incl. <pad>/<unk> (0: no character tensor)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


# ---------------------------------------------------------------- sources

@dataclass
class RawSplit:
    table: pa.Table
    origin: str          # file path or "hub-id[split]" for error messages
    rows: np.ndarray     # row numbers in ``origin`` (kept through hold-out and limits)


def local_files(root: Path, spec: TaskSpec) -> dict[str, Path]:
    """Find ``<split>-*.parquet`` (Hub layout) or ``<split>/*.parquet`` (convert/parquet) in the
    folder of the task's dataset, ``root/<spec.dataset.folder>``."""
    folder = root / spec.dataset.folder
    if not folder.is_dir():
        raise DataError(f"{spec.name}: no folder {folder} (expected {folder}/data/train-00000-of-00001.parquet, "
                        f"the Hub's parquet layout; or drop --data-dir to load {spec.dataset.hub_id} from the Hub)")
    found: dict[str, Path] = {}
    for split in SPLITS:
        hits = sorted(folder.glob(f"**/{split}-*.parquet")) or sorted(folder.glob(f"**/{split}/*.parquet"))
        if len(hits) > 1:
            raise DataError(f"{spec.name}: several {split} files in {folder}: "
                            f"{', '.join(map(str, hits))}; sharded splits are not supported yet")
        if hits:
            found[split] = hits[0]
    needed = ["train", "test"] + (["validation"] if spec.has_validation else [])
    missing = [s for s in needed if s not in found]
    if missing:
        raise DataError(f"{spec.name}: no {'/'.join(missing)} parquet file under {folder} "
                        f"(expected {folder}/data/<split>-00000-of-00001.parquet)")
    return found


def read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        # one short line, the path once: pyarrow's text repeats the path and says twice that the
        # file is not parquet ("Could not open Parquet input source '<path>': ... Either the file
        # is corrupted or this is not a parquet file.")
        why = (str(e).strip().splitlines() or [""])[0]
        for shown in dict.fromkeys((str(path), str(Path(path).resolve()))):
            why = why.replace(f"'{shown}'", "").replace(f"{shown} ", " ").removesuffix(shown)
        for said in ("Could not open Parquet input source :",
                     "Either the file is corrupted or this is not a parquet file."):
            why = why.replace(said, "")
        why = " ".join(why.split()).strip(" .:")
        if len(why) > 150:
            why = why[: why.rfind(" ", 0, 149)] + " …"
        detail = f"{type(e).__name__}: {why}" if why else type(e).__name__
        raise DataError(f"{path}: not a readable parquet file ({detail})") from None


def fingerprint(spec: TaskSpec, data_dir: str | None) -> dict:
    """What identifies the source data: file paths, sizes and mtimes, or the Hub id."""
    if data_dir:
        files = local_files(Path(data_dir), spec)
        return {s: [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for s, p in files.items()}
    ds = spec.dataset
    return {"hub": ds.hub_id, "config": ds.hub_config, "revision": ds.hub_revision}


def read_source(spec: TaskSpec, data_dir: str | None) -> dict[str, RawSplit]:
    if data_dir:
        return {s: _raw(read_parquet(p), str(p)) for s, p in local_files(Path(data_dir), spec).items()}
    try:
        import datasets

        ds = spec.dataset
        dd = datasets.load_dataset(ds.hub_id, ds.hub_config, revision=ds.hub_revision)
    except Exception as e:  # network, auth, missing dataset: all say the same to the user
        raise DataError(f"{spec.name}: cannot load {ds.hub_id} from the Hub ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); pass --data-dir DIR with "
                        f"local copies in the Hub's parquet layout (DIR/{ds.folder}/)") from None
    return {s: _raw(dd[s].data.table, f"{ds.hub_id}[{s}]") for s in SPLITS if s in dd}


def _raw(table: pa.Table, origin: str) -> RawSplit:
    return RawSplit(table, origin, np.arange(table.num_rows))


# ---------------------------------------------------------------- checks

def check_split(spec: TaskSpec, split: str, raw: RawSplit) -> None:
    """Columns present, split non-empty, no missing input (nor word) or label, labels in range,
    tokens/tags of equal length."""
    t, where, label_col = raw.table, raw.origin, spec.columns["label"]
    for role, col in spec.columns.items():
        if col not in t.column_names:
            raise DataError(f"{where}: missing column {col!r} ({role} of {spec.name}); "
                            f"columns are {', '.join(t.column_names)}")
    if t.num_rows == 0:
        raise DataError(f"{where}: the {split} split of {spec.name} is empty")
    input_col = spec.columns["input"]
    inputs = t.column(input_col)
    if inputs.null_count:   # e.g. a review without text: named here, not a tokenizer's traceback
        raise DataError(f"{where}: row {_first(pc.is_null(inputs))}: {input_col!r} is missing")
    labels = t.column(label_col)
    if labels.null_count:
        raise DataError(f"{where}: row {_first(pc.is_null(labels))}: {label_col!r} is missing")
    if spec.output == "tag":
        n_tok = pc.list_value_length(t.column(spec.columns["input"])).fill_null(-1)
        n_tag = pc.list_value_length(labels)
        mismatch = pc.not_equal(n_tok, n_tag)
        if pc.any(mismatch).as_py():
            row = _first(mismatch)
            raise DataError(f"{where}: row {row}: {n_tok[row].as_py()} tokens but "
                            f"{n_tag[row].as_py()} {label_col} tags")
        flat = pc.list_flatten(labels)
        row_of = np.repeat(np.arange(t.num_rows), np.asarray(n_tag))  # flat position -> row
        words = pc.list_flatten(inputs)   # as many as tags (checked above): row_of fits both
        if words.null_count:
            raise DataError(f"{where}: row {row_of[_first(pc.is_null(words))]}: a word of {input_col!r} "
                            f"is missing")
    else:
        flat, row_of = labels, np.arange(t.num_rows)
    if flat.null_count:
        raise DataError(f"{where}: row {row_of[_first(pc.is_null(flat))]}: a {label_col!r} value is missing")
    bad = pc.or_(pc.less(flat, 0), pc.greater_equal(flat, spec.num_labels))
    if pc.any(bad).as_py():
        pos = _first(bad)
        raise DataError(f"{where}: row {row_of[pos]}: {label_col} value {flat[pos].as_py()} out of range "
                        f"0..{spec.num_labels - 1} ({spec.name} has {spec.num_labels} labels)")


def _first(mask) -> int:
    """Index of the first True of a (chunked) boolean Arrow array; used on error paths only."""
    return int(np.flatnonzero(np.array(mask.fill_null(False).to_pylist(), dtype=bool))[0])


# ---------------------------------------------------------------- splits and limits

def take(raw: RawSplit, idx: np.ndarray) -> RawSplit:
    return RawSplit(raw.table.take(pa.array(idx)), raw.origin, raw.rows[idx])


def make_splits(spec: TaskSpec, cfg: TaskConfig, raws: dict[str, RawSplit], holdout_seed: int,
                limit_train: int | None, limit_eval: int | None) -> dict[str, RawSplit]:
    """Hold out validation from train when the task has none, then apply the limits.

    Everything is drawn from one generator seeded by ``holdout_seed`` (not the run's
    seed), so every run and every seed sees the same validation and test examples.
    """
    rng = np.random.default_rng(holdout_seed)
    out = dict(raws)
    if not spec.has_validation or "validation" not in raws:
        train = raws["train"]
        n = train.table.num_rows
        n_val = min(cfg.holdout_max, max(1, round(cfg.holdout_frac * n)))
        if n_val >= n:
            raise DataError(f"{train.origin}: {n} train rows cannot spare a hold-out of {n_val} "
                            f"for validation")
        perm = rng.permutation(n)
        out["validation"], out["train"] = take(train, np.sort(perm[:n_val])), take(train, np.sort(perm[n_val:]))
    for split, limit in (("train", limit_train), ("validation", limit_eval), ("test", limit_eval)):
        n = out[split].table.num_rows
        if limit is not None and limit < n:
            # a seeded subset, not the head: IMDB's files list all negatives first
            out[split] = take(out[split], np.sort(rng.permutation(n)[:limit]))
    return out


# ---------------------------------------------------------------- tensorize

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


# ---------------------------------------------------------------- cache

def cache_key(spec: TaskSpec, cfg: TaskConfig, data_dir: str | None, holdout_seed: int,
              limit_train: int | None, limit_eval: int | None, subwords: tuple[str, object] | None = None,
              chars: bool = False) -> str:
    """The tensor cache's key: everything the tensors depend on (``subwords``/``chars`` as ``load_task``)."""
    key = {"format": CACHE_FORMAT, "task": spec.name, "columns": spec.columns,
           "cfg": data_settings(cfg),   # the task's fields marked ``data`` (config.setting)
           "seed": holdout_seed, "limits": [limit_train, limit_eval],
           "source": fingerprint(spec, data_dir)}
    if subwords and spec.input == "text":   # keyed only when set: the word-level keys stay as they were
        key["tokenizer"] = subwords[0]
    if chars and spec.pretokenized:
        key["chars"] = MAX_WORD_CHARS
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_task(spec: TaskSpec, cfg: TaskConfig, data_dir: str | None = None, holdout_seed: int = 0,
              limit_train: int | None = None, limit_eval: int | None = None,
              cache_dir: Path | None = None, subwords: tuple[str, object] | None = None,
              chars: bool = False) -> TaskData:
    """Checked, split, tensorized data of one task, from the cache when it is there.

    What a stem reads beyond word ids (``Stem.reads``): ``subwords``, the (cache key, fast
    tokenizer) of a pretrained model; ``chars``, the characters of each word (tasks whose words are
    given; ignored for the others)."""
    key = cache_key(spec, cfg, data_dir, holdout_seed, limit_train, limit_eval, subwords, chars)
    path = (cache_dir or default_cache_dir()) / f"{spec.name}-{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            return TaskData(blob["name"], {k: Split(**v) for k, v in blob["splits"].items()},
                            blob["source"], blob["vocab_size"], blob["num_shapes"], blob["truncated"],
                            blob.get("num_chars", 0))
        except Exception:
            path.unlink(missing_ok=True)  # a torn or stale cache file: rebuild it
    raws = read_source(spec, data_dir)
    for split, raw in raws.items():
        check_split(spec, split, raw)
    data = tensorize(spec, cfg, make_splits(spec, cfg, raws, holdout_seed, limit_train, limit_eval),
                     subwords and subwords[1], chars)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"name": data.name, "source": data.source, "vocab_size": data.vocab_size,
                "num_shapes": data.num_shapes, "truncated": data.truncated, "num_chars": data.num_chars,
                "splits": {k: {"tensors": v.tensors, "gold": v.gold} for k, v in data.splits.items()}}, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return data


# ---------------------------------------------------------------- batches

def augment_images(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (reflect-padded by ``pad``) + horizontal flip, vectorized on x's device."""
    B, C, H, W = x.shape
    xp = torch.nn.functional.pad(x.float(), (pad,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, None, :]
    out = xp[torch.arange(B, device=x.device)[:, None, None, None],
             torch.arange(C, device=x.device)[None, :, None, None], rows, cols]
    flip = torch.rand(B, generator=gen, device=x.device) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.to(x.dtype)


class TrainStream:
    """Endless, seeded train batches of one task, already on the device.

    Text batches come from buckets of similar length and are cut to their longest
    example, so a batch of short reviews costs less. The order depends only on
    (seed, task), so single- and multi-task runs see the same examples.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, device: torch.device,
                 augment: bool = False, bucket: int = 50):
        self.split, self.device, self.augment = split, device, augment
        self.batch_size = min(batch_size, len(split))
        self.lengths = split.tensors["lengths"].cpu() if "lengths" in split.tensors else None
        self.cpu_gen = torch.Generator().manual_seed(seed)
        self.dev_gen = torch.Generator(device=device).manual_seed(seed)
        self.bucket = bucket
        self.epoch, self.examples = 0, 0
        self._queue: list[torch.Tensor] = []

    def _refill(self) -> None:
        n, bs = len(self.split), self.batch_size
        perm = torch.randperm(n, generator=self.cpu_gen)[: n - n % bs]   # drop the ragged tail
        batches = list(perm.view(-1, bs))
        if self.lengths is not None:
            chunk = bs * self.bucket
            batches = []
            for start in range(0, len(perm), chunk):
                part = perm[start:start + chunk]
                part = part[torch.argsort(self.lengths[part], stable=True)]
                batches += list(part.view(-1, bs))
            order = torch.randperm(len(batches), generator=self.cpu_gen)
            batches = [batches[i] for i in order]
        self._queue = batches
        self.epoch += 1

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if not self._queue:
            self._refill()
        idx = self._queue.pop()
        self.examples += len(idx)
        return select(self.split, idx, self.lengths, self.device,
                      self.dev_gen if self.augment else None)


def select(split: Split, idx: torch.Tensor, lengths: torch.Tensor | None, device: torch.device,
           gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    if device.type == "cuda":   # pinned host memory: the copy overlaps with queued GPU work
        idx = idx.pin_memory()
    dev_idx = idx.to(device, non_blocking=True)
    batch = {}
    if lengths is not None:
        host = lengths[idx]
        L = int(host.max())  # host-side lengths: no device sync
        for k, v in split.tensors.items():
            batch[k] = v[dev_idx, :L] if v.dim() >= 2 else v[dev_idx]   # (B, L) and (B, L, chars)
        batch["host_lengths"] = host   # on the host, for what needs them there (packing, metrics)
    else:
        batch = {k: v[dev_idx] for k, v in split.tensors.items()}
    if gen is not None and "x" in batch:
        batch["x"] = augment_images(batch["x"], gen)
    return batch


def eval_batches(split: Split, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, dict]]:
    """All examples once, text sorted by length (less padding); yields (indices, batch)."""
    lengths = split.tensors["lengths"].cpu() if "lengths" in split.tensors else None
    order = torch.argsort(lengths, stable=True) if lengths is not None else torch.arange(len(split))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, select(split, idx, lengths, device)
