"""Grids: named presets of variants x seeds x budget, run as one fault-isolated, resumable job.

Every run is a child process (clean peak-memory figures; a crash stays contained) that writes
its record to ``results/<grid>/records/<run_id>.json`` atomically (temp file + rename). The
records folder is the truth: ``runs.jsonl`` is rebuilt from it (again temp + rename) after each
run, so a grid killed at any moment, even with SIGKILL, resumes with every run recorded once.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RUNTIME_FIELDS, RunConfig, from_dict
from .errors import ConfigError
from .executors import EXECUTORS, ExecutorOptions, Job
from .registry import Registry
from .results import adopt, failed_record, merge, now_iso, read_record_files, record_path, run_id, write_json_atomic
from .tasks import default_tasks
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
    "quick", (*(f"stl-{t}" for t in default_tasks()), "hard-ew", "hard-uw", "hard-pcgrad", "hard-static-*",
              "adapters-ew", "lepton-*"), seeds=3,
    overrides={"train.steps": 200, "train.eval_every": 100}, limit_train=None, limit_eval=2000,
    help="STL baselines + representative MTL variants + the articles' design (lepton-*), 3 seeds, real data, "
         "200 steps: about two hours on 2 CPU cores"))
register_grid(Grid(
    "tagging", ("tagging-*",), seeds=5,
    help="CoNLL-2003 NER + POS + chunking through one BiLSTM encoder: STL, hard sharing with 6 weightings, the "
         "static sweep, NER with auxiliary tasks; 5 seeds, full data, 2,000 steps (CPU, background)"))
register_grid(Grid(
    "full", ("*",), seeds=3,
    help="every variant, 3 seeds, full data and the default 2000-step budget: meant for a GPU"))


@dataclass
class PlannedRun:
    run_id: str
    config: RunConfig


def plan(grid: str, *, seeds: int | None = None, variants: str | None = None,
         overrides: Sequence[str] = (), limit_train: int | None = None, limit_eval: int | None = None,
         **runtime: Any) -> list[PlannedRun]:
    """The runs of a grid: its variants (optionally narrowed by a pattern) x seeds. ``limit_*``
    replace the grid's own limits when given.

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
                              limit_train=g.limit_train if limit_train is None else limit_train,
                              limit_eval=g.limit_eval if limit_eval is None else limit_eval, **runtime)
            runs.append(PlannedRun(run_id(cfg), cfg))
    return runs


def worker(config_path: str, record_path: str) -> int:
    """Child process: train one config, write its record (ok or failed) atomically."""
    from .plugins import load_plugins
    from .train import run

    started = now_iso()
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
    started = now_iso()
    jobs = []
    for r in todo:
        cfg_path = jobs_dir / f"{r.run_id}.config.json"
        write_json_atomic(cfg_path, r.config.to_dict())
        jobs.append(Job(r.run_id, str(cfg_path), str(record_path(results_dir, r.run_id)), started))

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
