"""The one results schema: a versioned JSON record per run, built by one function, written two ways.

* ``build_record`` makes every record (a finished run in ``train.run``, a failed one anywhere:
  ``failed_record``) from typed parts; ``Record`` below documents each key.
* ``runs.jsonl`` (``append_record``): one record per line, appended with a single ``write`` on an
  ``O_APPEND`` file under an exclusive lock, then fsynced, so concurrent writers never interleave
  and a reader skips a torn last line (a machine that died mid-write) instead of failing.
* a grid's ``records/<run_id>.json`` (``write_json_atomic``, temp file + rename) are the truth
  from which its ``runs.jsonl`` is rebuilt (``merge``) after every run.

Nothing here imports torch at module level: the report reads records with it.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import math
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from .errors import LeptonError
from .outputs import FULL, disk_full, replace_atomically

if TYPE_CHECKING:
    import pandas as pd

    from .config import RunConfig

SCHEMA_VERSION = 1


class TaskMetrics(TypedDict):
    test: dict[str, float]       # metric -> value on the test split, best validation checkpoint
    val: dict[str, float]        # metric -> value on validation at that checkpoint
    primary: str                 # the task's primary metric (checkpoint selection, Δ vs STL)


class Selection(TypedDict):
    rule: str                    # how the tested checkpoint was chosen
    best_step: int
    best_val_score: float


class Curves(TypedDict):
    train_loss: list[dict[str, Any]]   # every log_every steps: step, lr, weights, task -> mean loss
    val: list[dict[str, Any]]          # every eval_every steps: step, task -> metric -> value
    diagnostics: NotRequired[list[dict[str, Any]]]   # every train.diagnose_every steps (diagnostics.py): step,
                                       # grad_norm {task}, cosine {i: {j}}, affinity {i: {j: Z(i -> j)}}


class Record(TypedDict, total=False):
    """One run. Keys in ``RECORD_KEYS`` are in every record (None where a failed run has none)."""

    schema_version: int          # SCHEMA_VERSION: readers skip records of another schema
    run_id: str                  # ``run_id(cfg)``: <variant>-s<seed>-<config hash>
    status: Literal["ok", "failed", "interrupted"]   # interrupted: stopped with its grid, run again on resume
    variant: str
    tasks: list[str]             # in config order
    seed: int
    config: dict[str, Any]       # the full RunConfig (``to_dict``)
    config_hash: str             # ``RunConfig.config_hash``: what is trained, not where it runs
    metrics: dict[str, TaskMetrics]   # task -> metrics ({} when failed)
    selection: Selection
    curves: Curves | dict
    cost: dict[str, Any]         # wall times, throughput, FLOPs, MFU, parameters, memory, per task ({} failed)
    data: dict[str, Any]         # task -> source, split sizes, vocabulary size, truncated examples
    env: dict[str, Any]          # versions, git hash, device, precision, compiled, notes, world size, packed
    started_at: str              # ISO 8601, UTC
    finished_at: str
    error: str                   # failed runs: one line, "<Type>: <message>"
    error_detail: str            # failed runs: the traceback's last 4,000 characters


RECORD_KEYS = ("schema_version", "run_id", "status", "variant", "tasks", "seed", "config",
               "config_hash", "metrics", "curves", "cost", "env", "started_at", "finished_at")


def run_id(cfg: RunConfig) -> str:
    """The one run-id format: what a grid plans, resumes by and names record files after."""
    return f"{cfg.variant}-s{cfg.seed}-{cfg.config_hash()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


JSONL = (",", ":")   # runs.jsonl lines without the spaces json adds: a line is read by programs
CURVE_DIGITS = 7   # significant digits of a curve's floats: float32's (losses, weights); more is noise


def compact_curves(curves: Any) -> Any:
    """A curve with every float rounded to ``CURVE_DIGITS`` significant digits: the training losses and
    weights are float32 values printed with float64's 17 digits otherwise, which made a 110-run grid's
    runs.jsonl 2.5 MB. Only the training-loss and diagnostics curves are compacted: validation curves are metrics, and
    checkpoint selection reads them exactly."""
    if isinstance(curves, float):
        return float(f"{curves:.{CURVE_DIGITS}g}") if math.isfinite(curves) else curves
    if isinstance(curves, dict):
        return {k: compact_curves(v) for k, v in curves.items()}
    if isinstance(curves, list):
        return [compact_curves(v) for v in curves]
    return curves


def _compact_training(curves: Any) -> Any:
    return {k: compact_curves(v) if k in ("train_loss", "diagnostics") else v for k, v in curves.items()}


def build_record(cfg: RunConfig, *, status: Literal["ok", "failed", "interrupted"], started_at: str,
                 env: dict[str, Any],
                 metrics: dict[str, TaskMetrics] | None = None, selection: Selection | None = None,
                 curves: Curves | None = None, cost: dict[str, Any] | None = None,
                 data: dict[str, Any] | None = None, error: str | None = None,
                 error_detail: str | None = None) -> Record:
    """Every record, ok or failed, from its typed parts; identity fields come from ``cfg``."""
    rec: Record = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id(cfg), "status": status,
        "variant": cfg.variant, "tasks": list(cfg.tasks), "seed": cfg.seed,
        "config": cfg.to_dict(), "config_hash": cfg.config_hash(),
        "metrics": metrics or {}, "curves": _compact_training(curves or {}), "cost": cost or {}, "env": env,
        "started_at": started_at, "finished_at": now_iso(),
    }
    if selection is not None:
        rec["selection"] = selection
    if data is not None:
        rec["data"] = data
    if status != "ok":
        rec["error"] = error or "unknown error"
        rec["error_detail"] = (error_detail or "")[-4000:]
    return rec


def failed_record(cfg: RunConfig, error: str, started_at: str, detail: str = "",
                  packed: dict[str, Any] | None = None, status: Literal["failed", "interrupted"] = "failed") -> Record:
    """The record of a run that raised, diverged, or whose worker died (``packed``: the packing of a run
    whose worker died, which the parent records for it; a worker's own record reads it by itself); with
    ``status="interrupted"``, of a run stopped with its grid (a signal, a full disk), which a resume runs again."""
    from .run.measure import environment, resolve_device  # torch: only where a run was attempted

    try:
        env = environment(resolve_device(cfg.device))
    except LeptonError:
        env = {}
    if packed:
        env["packed"] = packed
    return build_record(cfg, status=status, started_at=started_at, env=env, error=error, error_detail=detail)


# ---------------------------------------------------------------- runs.jsonl


def json_safe(x: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def append_record(path: str | os.PathLike, record: dict) -> None:
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    line = (json.dumps(json_safe(record), allow_nan=False, separators=JSONL) + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A torn line left by a killed writer would glue onto ours: start on a fresh line.
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as e:   # no torn line left behind: the file as it was
            os.ftruncate(fd, size)
            raise (disk_full(path.parent) if e.errno in FULL else e) from None
    finally:
        os.close(fd)


COMPRESS_ABOVE = 1 << 20   # a grid's records over 1 MiB are kept gzipped (runs.jsonl.gz): git stores them small


def runs_path(results_dir: str | os.PathLike) -> Path:
    """The file of a results folder's records: ``runs.jsonl.gz`` once a grid has outgrown
    ``COMPRESS_ABOVE`` (``merge`` decides), else ``runs.jsonl``."""
    gz = Path(results_dir) / "runs.jsonl.gz"
    return gz if gz.exists() else Path(results_dir) / "runs.jsonl"


def read_records(path: str | os.PathLike) -> list[dict]:
    """All complete records (of a ``.jsonl`` or ``.jsonl.gz``); torn or foreign lines are skipped with a
    warning, a gzip file that does not decompress is an error."""
    path = Path(path)
    if not path.exists():
        return []
    if path.suffix == ".gz":
        try:
            text = gzip.decompress(path.read_bytes()).decode()
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise LeptonError(f"{path} is not a readable gzip file of records ({e}): restore it from git, or "
                              "delete it and rebuild it from the records folder with another run of its grid") from e
    else:
        text = path.read_text()
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{n}: skipping a torn or invalid line", stacklevel=2)
            continue
        if isinstance(rec, dict) and rec.get("schema_version") == SCHEMA_VERSION:
            out.append(rec)
        else:
            warnings.warn(f"{path}:{n}: skipping a record of another schema", stacklevel=2)
    return out


# ---------------------------------------------------------------- a grid's record files


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON through a temporary file and a rename, so a reader never sees half of it; on any
    failure the temporary file is removed, and a full disk raises ``DiskFullError`` naming the folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise (disk_full(path.parent) if e.errno in FULL else e) from None
    replace_atomically(path, json.dumps(json_safe(obj), allow_nan=False).encode())


def record_path(results_dir: Path, rid: str) -> Path:
    return Path(results_dir) / "records" / f"{rid}.json"


def read_record_files(results_dir: Path) -> dict[str, dict]:
    """run_id -> record, from ``records/*.json`` (temp files of killed writers are ignored)."""
    out = {}
    for path in sorted((Path(results_dir) / "records").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("schema_version") == SCHEMA_VERSION:
            out[rec["run_id"]] = rec
    return out


def written_since(path: Path, started: str) -> bool:
    """Whether ``path`` holds a record of a run that started at or after ``started``."""
    try:
        return json.loads(Path(path).read_text()).get("started_at", "") >= started
    except (OSError, json.JSONDecodeError):
        return False


def adopt(results_dir: Path) -> None:
    """Give every record of ``runs.jsonl`` a record file, e.g. after a clone that has only the
    committed ``runs.jsonl``: otherwise the next merge would drop those runs."""
    have = read_record_files(results_dir)
    for rec in read_records(runs_path(results_dir)):
        if rec.get("run_id") and rec["run_id"] not in have:
            write_json_atomic(record_path(results_dir, rec["run_id"]), rec)


def merge(results_dir: Path) -> Path:
    """Rebuild ``runs.jsonl`` from the record files: one line per run, written atomically; gzipped as
    ``runs.jsonl.gz`` (the same bytes for the same records) when over ``COMPRESS_ABOVE``."""
    results_dir = Path(results_dir)
    records = sorted(read_record_files(results_dir).values(), key=lambda r: (r["finished_at"], r["run_id"]))
    data = "".join(json.dumps(rec, allow_nan=False, separators=JSONL) + "\n" for rec in records).encode()
    plain, gz = results_dir / "runs.jsonl", results_dir / "runs.jsonl.gz"
    path, other = (gz, plain) if len(data) > COMPRESS_ABOVE else (plain, gz)
    if path is gz:
        data = gzip.compress(data, compresslevel=9, mtime=0)   # no timestamp: reproducible bytes
    replace_atomically(path, data)   # no half-written file left, a full disk one clear line
    other.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- as a table

COST_COLUMNS = ("train_seconds", "eval_seconds", "diagnose_seconds", "data_seconds", "steps", "steps_per_s",
                "flops_per_step", "model_tflops_per_s", "mfu")
TASK_COST_COLUMNS = ("samples_per_s", "tokens_per_s", "infer_samples_per_s", "infer_tokens_per_s", "epochs",
                     "examples_seen", "train_examples")


def label_fraction(record: dict, config: dict[str, Any], task: str) -> float | None:
    """The share of its train split whose labels ``task`` trained on (its label budget; 1.0: every label):
    ``train_fraction``, or ``train_count`` over the split's rows as the record gives them."""
    count = config.get(f"tasks.{task}.train_count") or 0
    if not count:
        return config.get(f"tasks.{task}.train_fraction", 1.0)
    rows = (((record.get("data") or {}).get(task) or {}).get("sizes") or {}).get("train")
    return count / rows if rows else None


def load(path: str | os.PathLike) -> pd.DataFrame:
    """The records of a results folder (or of its ``runs.jsonl[.gz]``) as a pandas DataFrame: one row
    per run x task, flat columns. Identity: ``run_id, variant, seed, status, task, auxiliary``,
    ``label_fraction`` (the task's label budget, 1.0 for every label; ``label_fraction``) (and
    ``error`` for failed runs); the config keys whose values differ between the runs (dotted, e.g.
    ``train.lr``; the same everywhere: left out); ``primary`` (the task's primary metric's name),
    ``test.<metric>`` and ``val.<metric>`` for every metric of the task, ``test_primary`` and
    ``val_primary``; the run's cost (``train_seconds`` ... ``mfu``, ``params``, ``peak_rss_mb``, and
    on CUDA ``cuda_max_allocated_mb``) and the task's (``samples_per_s`` ... ``train_examples``);
    ``device``, ``packed`` (runs at a time on its device: 1 unless ``--runs-per-device``) and
    ``finished_at``. A later record of a run id (a retried run) replaces an earlier one."""
    import pandas as pd

    from .config import RUNTIME_FIELDS, complete, flatten

    p = Path(path)
    if not p.exists():
        raise LeptonError(f"no results at {p}: give a results folder (results/<grid>) or its runs.jsonl")
    records = list({r["run_id"]: r for r in read_records(runs_path(p) if p.is_dir() else p)}.values())
    configs = [{k: v for k, v in flatten(complete(r.get("config"))).items()
                if k != "seed" and k not in RUNTIME_FIELDS and not k.startswith("sweep.")} for r in records]
    keys = sorted({k for c in configs for k in c})
    # a task's settings vary only among the runs that train it; any other key among all runs
    varying = [k for k in keys if k not in ("variant", "auxiliary")   # columns of their own
               and len({repr(c.get(k)) for c in configs if k in c or not k.startswith("tasks.")}) > 1]
    rows = []
    for r, c in sorted(zip(records, configs, strict=True), key=lambda rc: rc[0]["run_id"]):
        cost, env = r.get("cost") or {}, r.get("env") or {}
        aux = set((r.get("config") or {}).get("auxiliary") or ())
        for task in r.get("tasks") or []:
            m = (r.get("metrics") or {}).get(task) or {}
            row: dict[str, Any] = {"run_id": r["run_id"], "variant": r.get("variant"), "seed": r.get("seed"),
                                   "status": r.get("status"), "task": task, "auxiliary": task in aux,
                                   "label_fraction": label_fraction(r, c, task)}
            if r.get("status") != "ok":
                row["error"] = r.get("error")
            row.update({k: c.get(k) for k in varying})
            row["primary"] = m.get("primary")
            for split in ("test", "val"):
                row.update({f"{split}.{k}": v for k, v in (m.get(split) or {}).items()})
                row[f"{split}_primary"] = (m.get(split) or {}).get(m.get("primary"))
            row.update({k: cost.get(k) for k in COST_COLUMNS})
            row["params"] = (cost.get("params") or {}).get("total")
            row.update(cost.get("memory") or {})
            row.update({k: ((cost.get("tasks") or {}).get(task) or {}).get(k) for k in TASK_COST_COLUMNS})
            row["device"] = env.get("device_name")
            row["packed"] = (env.get("packed") or {}).get("runs_per_device", 1)   # runs per device at a time
            row["finished_at"] = r.get("finished_at")
            rows.append(row)
    df = pd.DataFrame(rows)
    metrics = sorted(c for c in df.columns if c.startswith(("test.", "val.")))
    first = [c for c in ("run_id", "variant", "seed", "status", "error", "task", "auxiliary", "label_fraction")
             if c in df.columns]
    order = [*first, *varying, "primary", "test_primary", "val_primary", *metrics]
    return df[[*order, *(c for c in df.columns if c not in order)]] if rows else df
