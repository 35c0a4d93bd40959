"""Grids: named presets of variants x seeds x budget, run as one fault-isolated, resumable job.

Every run is a child process (clean peak-memory figures; a crash stays contained) that writes
its record to ``results/<grid>/records/<run_id>.json`` atomically (temp file + rename). The
records folder is the truth: ``runs.jsonl`` is rebuilt from it (again temp + rename) after each
run, so a grid killed at any moment, even with SIGKILL, resumes with every run recorded once.
"""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import RUNTIME_FIELDS, RunConfig, from_dict
from .errors import ConfigError, LeptonError
from .executors import EXECUTORS, ExecutorOptions, Job
from .registry import Registry
from .results import RECORD_KEYS, SCHEMA_VERSION, json_safe
from .variants import VARIANTS, make_config


@dataclass(frozen=True)
class Grid:
    name: str
    variants: tuple[str, ...]                 # fnmatch patterns over the variant registry
    seeds: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)   # dotted config keys, every run
    limit_train: int | None = None
    limit_eval: int | None = None
    help: str = ""


GRIDS: Registry[Grid] = Registry("grid")


def register_grid(g: Grid) -> Grid:
    return GRIDS.register(g.name, g, help=g.help)


register_grid(Grid(
    "smoke", ("*",), seeds=1, limit_train=256, limit_eval=128,
    overrides={"train.steps": 6, "train.eval_every": 3, "train.log_every": 3, "train.timing_warmup": 1},
    help="every variant, 6 steps on 256 real examples per task: seconds a run"))
register_grid(Grid(
    "quick", ("stl-*", "hard-ew", "hard-uw", "hard-pcgrad", "hard-static-*", "adapters-ew", "lepton-*"), seeds=3,
    overrides={"train.steps": 200, "train.eval_every": 100}, limit_train=None, limit_eval=2000,
    help="STL baselines + representative MTL variants + the articles' design (lepton-*), 3 seeds, real data, "
         "200 steps: about two hours on 2 CPU cores"))
register_grid(Grid(
    "full", ("*",), seeds=3,
    help="every variant, 3 seeds, full data and the default 2000-step budget: meant for a GPU"))


@dataclass
class PlannedRun:
    run_id: str
    config: RunConfig


def run_id(cfg: RunConfig) -> str:
    return f"{cfg.variant}-s{cfg.seed}-{cfg.config_hash()}"


def plan(grid: str, *, seeds: int | None = None, variants: str | None = None,
         overrides: Sequence[str] = (), **runtime: Any) -> list[PlannedRun]:
    """The runs of a grid: its variants (optionally narrowed by a pattern) x seeds.

    ``runtime`` sets the RunConfig fields that change how, not what, is trained (device, data_dir,
    precision, compile)."""
    unknown = set(runtime) - set(RUNTIME_FIELDS)
    if unknown:
        raise TypeError(f"plan() takes runtime fields only, not {', '.join(sorted(unknown))}")
    g = GRIDS.get(grid)
    names = list(dict.fromkeys(n for pattern in g.variants for n in VARIANTS.list(pattern)))
    if variants:   # comma-separated fnmatch patterns
        wanted = {n for pattern in variants.split(",") for n in VARIANTS.list(pattern.strip())}
        names = [n for n in names if n in wanted]
        if not names:
            raise ConfigError(f"no variant of grid {grid} matches {variants!r}")
    runs = []
    for seed in range(seeds if seeds is not None else g.seeds):
        for name in names:
            cfg = make_config(name, seed=seed, overrides=[*(f"{k}={json.dumps(v)}" for k, v in g.overrides.items()),
                                                          *overrides],
                              limit_train=g.limit_train, limit_eval=g.limit_eval, **runtime)
            runs.append(PlannedRun(run_id(cfg), cfg))
    return runs


# ---------------------------------------------------------------- records on disk

def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(json_safe(obj), f, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_record_files(results_dir: Path) -> dict[str, dict]:
    """run_id -> record, from ``records/*.json`` (temp files of killed writers are ignored)."""
    out = {}
    for path in sorted((results_dir / "records").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("schema_version") == SCHEMA_VERSION:
            out[rec["run_id"]] = rec
    return out


def adopt(results_dir: Path) -> None:
    """Give every record of ``runs.jsonl`` a record file, e.g. after a clone that has only the
    committed ``runs.jsonl``: otherwise the next merge would drop those runs."""
    from .results import read_records

    have = read_record_files(results_dir)
    for rec in read_records(results_dir / "runs.jsonl"):
        if rec.get("run_id") and rec["run_id"] not in have:
            write_json_atomic(results_dir / "records" / f"{rec['run_id']}.json", rec)


def merge(results_dir: Path) -> Path:
    """Rebuild ``runs.jsonl`` from the record files: one line per run, written atomically."""
    records = sorted(read_record_files(results_dir).values(), key=lambda r: (r["finished_at"], r["run_id"]))
    path = results_dir / "runs.jsonl"
    fd, tmp = tempfile.mkstemp(dir=results_dir, prefix=".runs.jsonl.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        for rec in records:
            f.write(json.dumps(rec, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def failed_record(cfg: RunConfig, error: str, started: str, detail: str = "") -> dict:
    from .measure import environment, resolve_device

    try:
        env = environment(resolve_device(cfg.device))
    except LeptonError:
        env = {}
    rec = {k: None for k in RECORD_KEYS}
    rec.update(schema_version=SCHEMA_VERSION, run_id=run_id(cfg), status="failed", variant=cfg.variant,
               tasks=list(cfg.tasks), seed=cfg.seed, config=cfg.to_dict(), config_hash=cfg.config_hash(),
               metrics={}, curves={}, cost={}, env=env, error=error, error_detail=detail[-4000:],
               started_at=started, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return rec


def worker(config_path: str, record_path: str) -> int:
    """Child process: train one config, write its record (ok or failed) atomically."""
    from .plugins import load_plugins
    from .train import run

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cfg = from_dict(json.loads(Path(config_path).read_text()))
    plugins = env_plugins()
    try:
        load_plugins(plugins)
        record = run(cfg)
    except Exception as e:   # any failure of one run is recorded, never raised into the grid
        msg = str(e).splitlines()[0] if str(e) else ""
        record = failed_record(cfg, f"{type(e).__name__}: {msg}", started, traceback.format_exc())
    write_json_atomic(Path(record_path), record)
    return 0 if record["status"] == "ok" else 1


def env_plugins() -> list[str]:
    """Plugin modules the grid passes to its workers (the parent's --plugin flags)."""
    return [p for p in os.environ.get("LEPTON_BENCH_PLUGINS", "").split(",") if p]


# ---------------------------------------------------------------- the runner

@dataclass
class GridSummary:
    planned: int
    skipped: int
    finished: int = 0
    failed: int = 0
    results: Path | None = None


def run_grid(runs: list[PlannedRun], results_dir: Path, *, retry_failed: bool = False,
             progress: Callable[[str, dict], None] | None = None, executor: str = "local",
             options: ExecutorOptions | None = None) -> GridSummary:
    """Run what is not yet recorded (and failed runs with ``retry_failed``) on ``executor``."""
    say = progress or (lambda event, info: None)
    options = options or ExecutorOptions()
    engine = EXECUTORS.get(executor)(options, results_dir)
    adopt(results_dir)
    done = read_record_files(results_dir)
    todo = [r for r in runs if r.run_id not in done or (retry_failed and done[r.run_id]["status"] != "ok")]
    summary = GridSummary(planned=len(runs), skipped=len(runs) - len(todo))
    results_dir.mkdir(parents=True, exist_ok=True)
    merge(results_dir)
    say("plan", {"todo": len(todo), "skipped": summary.skipped})
    summary.results = results_dir / "runs.jsonl"
    if not todo:
        return summary
    jobs_dir = results_dir / "jobs"
    jobs_dir.mkdir(exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    jobs = []
    for r in todo:
        cfg_path = jobs_dir / f"{r.run_id}.config.json"
        write_json_atomic(cfg_path, r.config.to_dict())
        jobs.append(Job(r.run_id, str(cfg_path), str(results_dir / "records" / f"{r.run_id}.json"), started))

    def finished(job: Job) -> None:
        rec = json.loads(Path(job.record_path).read_text())
        if rec["status"] == "ok":
            summary.finished += 1
        else:
            summary.failed += 1
        Path(job.config_path).unlink(missing_ok=True)
        merge(results_dir)
        say("run", {"record": rec, "finished": summary.finished, "failed": summary.failed,
                    "remaining": len(todo) - summary.finished - summary.failed})

    engine.run(jobs, finished)
    return summary
