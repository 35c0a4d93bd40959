"""Where the runs of a grid execute: local processes, Slurm through submitit, or a Ray cluster.

Every executor runs the same job, ``run_job``: train one config in a fresh
``python -m lepton_bench _worker`` process and leave its record file (ok or failed) in the
shared results folder. Resume, exactly-once records and ``--retry-failed`` therefore belong to
the grid (``grid.py``), not to the engine; an engine only decides where and when a job runs.
The engines are optional extras: ``pip install 'lepton-bench[slurm]'`` / ``'lepton-bench[ray]'``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import from_dict
from .errors import ConfigError
from .registry import Registry
from .results import failed_record, write_json_atomic, written_since


@dataclass(frozen=True)
class Job:
    """One run of a grid: its config file and where its record must appear (shared storage)."""

    run_id: str
    config_path: str
    record_path: str
    started: str          # ISO time at submission: a record older than this is not this job's


@dataclass(frozen=True)
class ExecutorOptions:
    workers: int = 1                 # local: runs at a time; slurm: array parallelism
    cpus_per_run: int | None = None  # threads per run (local default: cores / workers)
    gpus_per_run: int = 0
    mem_gb: float | None = None      # slurm: memory per run
    partition: str | None = None     # slurm partition
    time_min: int = 240              # slurm: time limit per run, minutes
    cluster: str | None = None       # submitit: None (auto: Slurm if present), "slurm", "local", "debug"
    address: str | None = None       # ray: cluster address ("auto", "ray://host:10001"); None: a local Ray
    plugins: tuple[str, ...] = ()    # --plugin modules every run imports first


def last_line(text: object) -> str:
    """The last non-empty line of an error or a stream, for one-line messages."""
    lines = str(text or "").strip().splitlines()
    return lines[-1] if lines else ""


def run_job(job: Job, plugins: Sequence[str] = (), threads: int | None = None) -> dict[str, Any]:
    """Train one run in a child process; make sure a record exists afterwards. Runs wherever the
    engine placed it (this machine, a Slurm node, a Ray worker). Returns a short summary."""
    env = {**os.environ, "LEPTON_BENCH_PLUGINS": ",".join(plugins)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-m", "lepton_bench", "_worker", job.config_path, job.record_path],
                          env=env, capture_output=True, text=True)
    # the child may have died before writing (killed, out of memory, segfault): record that
    reason = "killed by the system (out of memory?)" if proc.returncode in (-9, 137) else \
        f"exit code {proc.returncode}"
    ensure_record(job, f"worker died: {reason}; {last_line(proc.stderr)}", proc.stderr or "")
    return {"run_id": job.run_id, "returncode": proc.returncode}


def ensure_record(job: Job, error: str, detail: str = "") -> None:
    """If no record of this job was written since it started (the worker died, or the engine
    cancelled, timed out or lost the job), record the run as failed with ``error``."""
    if not written_since(Path(job.record_path), job.started):
        cfg = from_dict(json.loads(Path(job.config_path).read_text()))
        write_json_atomic(Path(job.record_path), failed_record(cfg, error[:500], job.started, detail))


class Executor(ABC):
    """Runs jobs somewhere and calls ``done(job)`` as each one ends, in any order."""

    name = ""
    extra: str | None = None   # the pip extra that installs the engine

    def __init__(self, options: ExecutorOptions, results_dir: Path):
        self.options, self.results_dir = options, results_dir

    @abstractmethod
    def run(self, jobs: list[Job], done: Callable[[Job], None]) -> None: ...

    def _import(self, module: str):
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"executor {self.name} needs {module}: "
                              f"pip install 'lepton-bench[{self.extra}]'") from None


EXECUTORS: Registry[type[Executor]] = Registry("executor")


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Child processes on this machine, ``workers`` at a time with cores / workers threads each."""

    name = "local"

    def run(self, jobs, done):
        o = self.options
        threads = o.cpus_per_run or max(1, (os.cpu_count() or 1) // o.workers)   # no oversubscription
        with ThreadPoolExecutor(max_workers=o.workers) as pool:
            futures = {pool.submit(run_job, job, o.plugins, threads): job for job in jobs}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    fut.result()
                except Exception as e:   # a failure to even start the child: that run fails
                    ensure_record(job, f"could not start the run: {type(e).__name__}: {e}")
                done(job)


@EXECUTORS.register("submitit")
class SubmititExecutor(Executor):
    """Slurm through submitit: one array job, one task per run (``cluster='local'`` runs the same
    jobs as local processes, which is how the tests exercise it)."""

    name = "submitit"
    extra = "slurm"

    def run(self, jobs, done):
        submitit = self._import("submitit")
        o = self.options
        ex = submitit.AutoExecutor(folder=str(self.results_dir / "slurm" / "%j"), cluster=o.cluster)
        params: dict[str, Any] = {"timeout_min": o.time_min, "cpus_per_task": o.cpus_per_run or 4,
                                  "gpus_per_node": o.gpus_per_run, "nodes": 1, "tasks_per_node": 1,
                                  "name": "lepton_bench"}
        if o.mem_gb:
            params["mem_gb"] = o.mem_gb
        if o.partition:
            params["slurm_partition"] = o.partition
        if ex.cluster == "slurm":
            params["slurm_array_parallelism"] = o.workers
        ex.update_parameters(**params)
        threads = o.cpus_per_run or (4 if ex.cluster == "slurm" else max(1, (os.cpu_count() or 1) // o.workers))
        handles = ex.map_array(run_job, jobs, [tuple(o.plugins)] * len(jobs), [threads] * len(jobs))
        by_id = {h.job_id: job for h, job in zip(handles, jobs, strict=True)}
        for h in submitit.helpers.as_completed(handles):
            job = by_id[h.job_id]
            try:
                h.result()
            except Exception as e:   # cancelled, timed out, node failure: the run failed
                ensure_record(job, f"submitit job {h.job_id} failed: {last_line(e)}")
            done(job)


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """A Ray cluster (``ray.init(address=...)``; none: a local Ray), one task per run with its
    CPU and GPU request. lepton_bench must be installed on the workers and the results folder
    shared with them."""

    name = "ray"
    extra = "ray"

    def run(self, jobs, done):
        ray = self._import("ray")
        o = self.options
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=o.address, include_dashboard=False, log_to_driver=False)
        try:
            cpus = o.cpus_per_run or 1
            task = ray.remote(num_cpus=cpus, num_gpus=o.gpus_per_run, max_retries=0)(run_job)
            pending = {task.remote(job, tuple(o.plugins), cpus): job for job in jobs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                try:
                    ray.get(ready[0])
                except Exception as e:   # worker lost, task cancelled: the run failed
                    ensure_record(job, f"ray task failed: {type(e).__name__}: {last_line(e)}")
                done(job)
        finally:
            if started_here:
                ray.shutdown()

