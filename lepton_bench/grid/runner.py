"""Grids: named presets of variants x seeds x budget, run as one fault-isolated, resumable job.

Every run is a child process (clean peak-memory figures; a crash stays contained) that writes
its record to ``results/<grid>/records/<run_id>.json`` atomically (temp file + rename). The
records folder is the truth: ``runs.jsonl`` is rebuilt from it (again temp + rename) after each
run, so a grid killed at any moment, even with SIGKILL, resumes with every run recorded once.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import from_dict
from ..results import (
    adopt,
    failed_record,
    merge,
    now_iso,
    read_record_files,
    record_path,
    runs_path,
    write_json_atomic,
)
from .executors import EXECUTORS, ExecutorOptions, Job, Stop
from .plan import PlannedRun


def worker(config_path: str, record_path: str) -> int:
    """Child process: train one config, write its record (ok or failed) atomically. With ``cfg.log`` the
    run is one tracker run of each tracker, named by its run id, ended after the record is written."""
    from ..plugins import load_plugins
    from ..run.trackers import close_trackers, fan_out, open_trackers
    from ..run.train import run

    started = now_iso()
    cfg = from_dict(json.loads(Path(config_path).read_text()))
    plugins = env_plugins()
    trackers = []
    try:
        load_plugins(plugins)
        trackers = open_trackers(cfg)
        record = run(cfg, fan_out(None, trackers))
    except Exception as e:   # any failure of one run is recorded, never raised into the grid
        msg = str(e).splitlines()[0] if str(e) else ""
        record = failed_record(cfg, f"{type(e).__name__}: {msg}", started, traceback.format_exc())
    write_json_atomic(Path(record_path), record)
    close_trackers(trackers, record)
    return 0 if record["status"] == "ok" else 1


def serve() -> int:
    """A warm worker (``_worker --serve``): read jobs, one JSON line each (``{"config", "record"}``), from
    stdin; train each with ``worker`` and answer ``{"returncode"}`` on a line of its own, until stdin
    closes or a run fails (its process may be in a bad state: the executor starts a fresh one). Before
    each run the previous one's memory is released and the peak-RSS mark reset, so each record's peak is
    that of its own run over the process's resident base (imports, and what earlier runs' lazy imports
    added: about 1.0 GB here against 0.5-0.9 GB in a fresh process), which the record keeps beside it
    (``cost.memory.rss_at_start_mb``); ``env.worker.run`` says which of the worker's runs it was. Anything a
    run prints goes to stderr: stdout carries the answers only."""
    from ..run.measure import release_memory, reset_peak_rss
    from ..run.runenv import set_warm_run

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    runs = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        runs += 1
        release_memory()
        reset_peak_rss()
        set_warm_run({"run": runs})
        code = worker(job["config"], job["record"])
        set_warm_run(None)
        answers.write(json.dumps({"returncode": code}) + "\n")
        if code:
            break
    return 0


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
    interrupted: int = 0     # stopped with the grid (a signal): run again on resume
    left: int = 0            # not started when the grid stopped
    results: Path | None = None


def to_run(record: dict | None, retry_failed: bool) -> bool:
    """Whether a planned run is still to run: no record, an interrupted one, or (``retry_failed``) a failed one."""
    return record is None or record["status"] == "interrupted" or (retry_failed and record["status"] != "ok")


def run_grid(runs: list[PlannedRun], results_dir: Path, *, retry_failed: bool = False,
             progress: Callable[[str, dict], None] | None = None, executor: str = "local",
             options: ExecutorOptions | None = None, stop: Stop | None = None) -> GridSummary:
    """Run what is not yet recorded (interrupted runs again, and failed runs with ``retry_failed``) on
    ``executor``. Setting ``stop`` (a signal handler does) ends the runs in flight, recorded interrupted, and
    starts no other: the summary counts them and the runs left."""
    say = progress or (lambda event, info: None)
    options = options or ExecutorOptions()
    engine = EXECUTORS.get(executor)(options, results_dir)
    if stop is not None:
        engine.stop = stop
    adopt(results_dir)
    done = read_record_files(results_dir)
    todo = [r for r in runs if not r.pending and to_run(done.get(r.run_id), retry_failed)]
    summary = GridSummary(planned=len(runs), skipped=len(runs) - len(todo))
    results_dir.mkdir(parents=True, exist_ok=True)
    merge(results_dir)
    say("plan", {"todo": len(todo), "skipped": summary.skipped})
    summary.results = runs_path(results_dir)
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
        elif rec["status"] == "interrupted":
            summary.interrupted += 1
        else:
            summary.failed += 1
        Path(job.config_path).unlink(missing_ok=True)
        merge(results_dir)
        say("run", {"record": rec, "finished": summary.finished, "failed": summary.failed,
                    "remaining": len(todo) - summary.finished - summary.failed - summary.interrupted})

    engine.run(jobs, finished)
    summary.left = len(todo) - summary.finished - summary.failed - summary.interrupted
    return summary
