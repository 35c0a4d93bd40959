"""Load, check, split, tensorize and cache the tasks' data; feed batches on the device.

Sources: each task's ``Dataset`` (``tasks.py``): its Hub id by default, or its folder
``DIR/<folder>/`` in the Hub's parquet layout (``--data-dir`` / ``LEPTON_BENCH_DATA``);
tasks of one dataset read one folder. A derived-label task reads its source's rows and label
column, checks them as the source's, then maps the labels (``derive_labels``): its splits are
its source's rows, in the same order. Local parquet files are read with
pyarrow directly: ``datasets.load_dataset(<folder>)`` caches by folder *name*, so a
64-row slice and the full mirror in two folders called ``imdb`` would share a cache
entry. Our own tensor cache is keyed by file paths + sizes + mtimes instead, one file per task and data
setting, capped in size with least-recently-used eviction (``lepton_bench/cache.py``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..cache import cache_cap, default_cache_dir, evict, touch
from ..config import TaskConfig, data_settings
from ..tasks import IGNORE, TaskSpec
from .batches import TrainStream, augment_images, eval_batches, select
from .sources import (
    budget_fields,
    check_split,
    compute_labels,
    derive_labels,
    fingerprint,
    labelled_count,
    labelled_rows,
    local_files,
    make_splits,
    read_parquet,
    read_source,
    take,
    train_rows,
)
from .tensorize import (
    build_char_vocab,
    build_tokenizer,
    clip,
    decode_images,
    first_subtoken_labels,
    special_frame,
    tensorize,
    tensorize_subwords,
    tensorize_text,
    word_shape,
)
from .types import MAX_WORD_CHARS, NUM_SHAPES, PAD, SPLITS, UNK, RawSplit, Split, TaskData

__all__ = ["MAX_WORD_CHARS", "NUM_SHAPES", "PAD", "SPLITS", "UNK", "RawSplit", "Split", "TaskData", "TrainStream",
           "apply_budget", "augment_images", "budget_fields", "build_char_vocab", "build_tokenizer", "cache_cap",
           "cache_key", "check_split", "compute_labels", "clip", "labelled_count", "labelled_rows", "train_rows",
           "decode_images", "default_cache_dir", "derive_labels", "eval_batches", "fingerprint",
           "first_subtoken_labels", "load_task", "local_files", "make_splits", "read_parquet", "read_source",
           "select", "special_frame", "take", "tensorize", "tensorize_subwords", "tensorize_text", "word_shape"]

CACHE_FORMAT = 1          # bump when the tensorized layout changes


# ---------------------------------------------------------------- cache

def apply_budget(train: Split, task: str, cfg: TaskConfig) -> None:
    """The task's label budget on its tensorized train split: the labelled rows kept in ``labelled``, every
    other row's labels set to IGNORE (so nothing downstream can train on them). Inputs stay as they are:
    the group's tasks share them."""
    rows = labelled_rows(task, cfg, len(train))
    if rows is None:
        return
    keep = torch.from_numpy(rows)
    hidden = torch.ones(len(train), dtype=torch.bool)
    hidden[keep] = False
    train.tensors["y"] = train.tensors["y"].clone()
    train.tensors["y"][hidden] = IGNORE
    train.labelled = keep


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
    if spec.derived:   # its own name tells it apart already; the map makes a changed map a new entry
        key["derived"] = {"from": spec.derived_from, "label_map": list(spec.label_map)}
    if spec.computed:   # the functions by name (their code cannot be hashed reliably) and their version
        key["derived"]["computed"] = [_qualname(spec.compute_label), _qualname(spec.label_stats),
                                      spec.label_version]
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _qualname(fn) -> str | None:
    return None if fn is None else f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


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
    try:   # no exists() first: another process may evict the file between the two (then: rebuilt below)
        blob = torch.load(path, weights_only=True)
        data = TaskData(blob["name"], {k: Split(**v) for k, v in blob["splits"].items()},
                        blob["source"], blob["vocab_size"], blob["num_shapes"], blob["truncated"],
                        blob.get("num_chars", 0), blob.get("label_stats", {}))
    except FileNotFoundError:
        pass                              # not cached, or just evicted: build it
    except Exception:
        path.unlink(missing_ok=True)      # a torn or stale cache file: rebuild it
    else:
        touch(path)                       # used now: the last to be evicted
        return data
    cap = cache_cap()   # a bad LEPTON_BENCH_CACHE_MAX_GB fails before the work, not after
    raws = read_source(spec, data_dir)
    for split, raw in raws.items():
        check_split(spec, split, raw)   # a derived task: the source's label column, as the source's
    raws = {split: derive_labels(spec, raw) for split, raw in raws.items()}
    splits, label_stats = compute_labels(spec, make_splits(spec, cfg, raws, holdout_seed, limit_train, limit_eval))
    data = tensorize(spec, cfg, splits, subwords and subwords[1], chars)
    data.label_stats = label_stats
    apply_budget(data.splits["train"], spec.name, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"name": data.name, "source": data.source, "vocab_size": data.vocab_size,
                "num_shapes": data.num_shapes, "truncated": data.truncated, "num_chars": data.num_chars,
                **({"label_stats": data.label_stats} if data.label_stats else {}),
                "splits": {k: {"tensors": v.tensors, "gold": v.gold, "labelled": v.labelled}
                           for k, v in data.splits.items()}}, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    evict(path.parent, cap, keep=[path])   # least recently used first, down to the cap; never this one
    return data
