"""Where a task's rows come from (a Hub dataset or a local parquet folder), their checks, a derived
task's mapped labels, the validation hold-out and the seeded limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import TaskConfig
from ..errors import ConfigError, DataError
from ..tasks import TaskSpec
from .types import SPLITS, RawSplit


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
    tokens/tags of equal length. A derived task's label column holds its source's label ids: they
    are checked against the source's labels (``derive_labels`` maps them afterwards)."""
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
    check_label_type(spec, raw)
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
    owner = spec.source   # whose label ids the column holds
    n = owner.num_labels
    bad = pc.or_(pc.less(flat, 0), pc.greater_equal(flat, n))
    if pc.any(bad).as_py():
        pos = _first(bad)
        whose = f"{owner.name} has {n} labels" + (f", which {spec.name} maps" if owner is not spec else "")
        raise DataError(f"{where}: row {row_of[pos]}: {label_col} value {flat[pos].as_py()} out of range "
                        f"0..{n - 1} ({whose})")


def _kind(typ: pa.DataType) -> str:
    """A column type in words: 'strings', 'floats', 'lists of strings', ..."""
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return f"lists of {_kind(typ.value_type)}"
    for test, word in ((pa.types.is_integer, "integers"), (pa.types.is_floating, "floats"),
                       (pa.types.is_boolean, "booleans"), (pa.types.is_string, "strings"),
                       (pa.types.is_large_string, "strings"), (pa.types.is_dictionary, "categories")):
        if test(typ):
            return word
    return f"values of type {typ}"


def check_label_type(spec: TaskSpec, raw: RawSplit) -> None:
    """A label column holds label ids: integers (classification), or one list of integers per sentence
    (tagging). Anything else — tag names as strings, floats, lists of the wrong depth — is refused in one
    line naming the file, the first row and the column, as a value out of range is."""
    t, col = raw.table, spec.columns["label"]
    typ = t.schema.field(col).type
    tagging = spec.output == "tag"
    is_list = pa.types.is_list(typ) or pa.types.is_large_list(typ)
    if (is_list and tagging and pa.types.is_integer(typ.value_type)) or (not tagging and pa.types.is_integer(typ)):
        return
    value = t.column(col)[0].as_py()
    if is_list and tagging:   # the first element tells what is wrong
        value = next(iter(value), value)
    n = spec.source.num_labels
    raise DataError(f"{raw.origin}: row 0: {col} value {value!r} is not a label id (an integer 0..{n - 1}"
                    f"{', one per token' if tagging else ''}): the column holds {_kind(typ)}")


def derive_labels(spec: TaskSpec, raw: RawSplit) -> RawSplit:
    """A derived task's labels: its label column (the source's, checked by ``check_split``) replaced
    by ``label_map[source label]``, per example or per token, vectorised; other tasks' rows as
    they are. Rows and their order do not change."""
    if not spec.derived or spec.computed:   # computed labels: after the split (compute_labels)
        return raw
    t, col = raw.table, spec.columns["label"]
    lmap = np.asarray(spec.label_map, dtype=np.int64)
    labels = t.column(col).combine_chunks()
    if spec.output == "tag":
        lengths = pc.list_value_length(labels).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(labels).to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        mapped = pa.ListArray.from_arrays(pa.array(offsets), pa.array(lmap[flat]))
    else:
        mapped = pa.array(lmap[labels.to_numpy(zero_copy_only=False)])
    return RawSplit(t.set_column(t.schema.get_field_index(col), col, mapped), raw.origin, raw.rows)


def compute_labels(spec: TaskSpec, splits: dict[str, RawSplit]) -> tuple[dict[str, RawSplit], dict]:
    """A computed-label task's labels (``TaskSpec.compute_label``), and the statistics of the training
    rows they were computed with (``label_stats``, once, on the split the model trains on: no
    validation or test row informs a label). Other tasks' splits as they are."""
    if not spec.computed:
        return splits, {}
    stats = {k: v.item() if isinstance(v, np.generic) else v
             for k, v in dict(spec.label_stats(splits["train"].table) if spec.label_stats else {}).items()}
    col, n = spec.columns["label"], spec.num_labels
    out = {}
    for split, raw in splits.items():
        t = raw.table
        try:
            ids = np.asarray(spec.compute_label(t, stats))
        except Exception as e:
            raise DataError(f"{raw.origin}: {spec.name}'s compute_label failed on the {split} split: "
                            f"{type(e).__name__}: {e}") from None
        if ids.shape != (t.num_rows,) or not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == bool):
            raise DataError(f"{raw.origin}: {spec.name}'s compute_label gave {ids.dtype} of shape {ids.shape} "
                            f"for {t.num_rows} rows of {split}; it must give one integer label id per row")
        ids = ids.astype(np.int64)
        bad = np.flatnonzero((ids < 0) | (ids >= n))
        if len(bad):
            raise DataError(f"{raw.origin}: row {bad[0]}: {spec.name}'s compute_label gave {ids[bad[0]]}, "
                            f"out of range 0..{n - 1} ({', '.join(spec.labels)})")
        out[split] = RawSplit(t.set_column(t.schema.get_field_index(col), col, pa.array(ids)), raw.origin, raw.rows)
    return out, stats


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
        n_val = holdout_size(cfg, n)
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


def holdout_size(cfg: TaskConfig, n: int) -> int:
    """Validation rows held out of ``n`` train rows (a task without a validation split of its own)."""
    return min(cfg.holdout_max, max(1, round(cfg.holdout_frac * n)))


# ---------------------------------------------------------------- the label budget

def budget_fields(task: str, cfg: TaskConfig) -> None:
    """Refuse a budget that no split could meet (a fraction outside (0, 1], a negative count), before
    anything is read."""
    if not 0 < cfg.train_fraction <= 1:
        raise ConfigError(f"tasks.{task}.train_fraction must be in (0, 1], not {cfg.train_fraction:g}")
    if cfg.train_count < 0:
        raise ConfigError(f"tasks.{task}.train_count must be a number of rows (0: by fraction), "
                          f"not {cfg.train_count}")
    if cfg.train_count and cfg.train_fraction != 1:
        raise ConfigError(f"tasks.{task}: set train_fraction or train_count, not both "
                          f"({cfg.train_fraction:g} and {cfg.train_count})")


def labelled_count(task: str, cfg: TaskConfig, n: int) -> int:
    """How many of ``n`` train rows the task's budget labels; refuses a count above ``n`` and a budget
    under one batch (every step gives the task a full batch of its own labelled rows)."""
    budget_fields(task, cfg)
    if cfg.train_count > n:
        raise ConfigError(f"tasks.{task}.train_count={cfg.train_count} is more than the {n} rows of its "
                          f"train split")
    k = cfg.train_count or round(cfg.train_fraction * n)
    if k < min(cfg.batch_size, n):   # a whole split smaller than a batch is one batch (without a budget)
        field_ = f"train_count={cfg.train_count}" if cfg.train_count else f"train_fraction={cfg.train_fraction:g}"
        raise ConfigError(f"tasks.{task}.{field_} leaves {k} labelled train rows of {n}, fewer than one batch "
                          f"of {cfg.batch_size}: raise it or lower tasks.{task}.batch_size")
    return k


def labelled_rows(task: str, cfg: TaskConfig, n: int) -> np.ndarray | None:
    """The train rows (sorted) whose labels the task trains on, or None for all of them: the first k of one
    permutation of the n rows drawn by ``label_seed``, so the subsets of one seed are nested."""
    k = labelled_count(task, cfg, n)
    if k == n:
        return None
    return np.sort(np.random.default_rng(cfg.label_seed).permutation(n)[:k])


def train_rows(spec: TaskSpec, cfg: TaskConfig, data_dir: str | None, limit_train: int | None) -> int | None:
    """The task's train rows after the hold-out and ``limit_train``, from a local file's parquet metadata
    (nothing is read); None for a Hub source (its budget is checked once its rows are in)."""
    if not data_dir:
        return None
    import pyarrow.parquet as pq

    files = local_files(Path(data_dir), spec)
    try:
        n = pq.ParquetFile(files["train"]).metadata.num_rows
    except (OSError, pa.ArrowException):
        return None   # unreadable: read_parquet says why, with the file, when the data loads
    if not spec.has_validation or "validation" not in files:
        n -= holdout_size(cfg, n)
    return min(n, limit_train) if limit_train is not None else n
