"""Where the runs of a grid execute: local processes, Slurm through submitit, or a Ray cluster.

Every executor runs the same job: train one config in a ``python -m lepton_bench _worker`` process
and leave its record file (ok or failed) in the shared results folder. Slurm and Ray start a fresh
process per run (``run_job``); the local executor keeps one warm worker per slot (``WarmWorker``:
imports paid once, each run seeded and its peak memory reset as in a fresh process), or, with
``--process-per-run``, starts a fresh one too. Resume, exactly-once records and ``--retry-failed`` therefore belong to
the grid (``grid.py``), not to the engine; an engine only decides where and when a job runs.
The engines are optional extras: ``pip install 'lepton-bench[slurm]'`` / ``'lepton-bench[ray]'``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..errors import ConfigError
from ..outputs import DiskFullError, held_lock_fds
from ..registry import Registry
from ..results import failed_record, write_json_atomic, written_since
from ..run.runenv import PACKED_ENV, packing


class Stop(threading.Event):
    """Set when the grid must stop (a signal, a full disk): no new run starts, the runs in flight are ended
    and recorded as interrupted (a resume runs them again). ``why`` says what stopped it."""

    why = ""
    signum = 0   # the signal that asked for it (0: none)

    def request(self, why: str) -> None:
        if not self.is_set():
            self.why = why
        self.set()


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
    runs_per_device: int = 1         # local: runs at a time on each visible GPU (on the CPU without one)
    process_per_run: bool = False    # local: a fresh process per run instead of a warm worker per slot

    def __post_init__(self):
        n = self.runs_per_device
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"--runs-per-device must be a whole number of at least 1, got {n!r}")
        if n > 1 and self.workers > 1:
            raise ConfigError("--workers and --runs-per-device both set how many runs go at a time: give one "
                              "(--runs-per-device N: N runs on each visible GPU, N on the CPU without one)")


# ---------------------------------------------------------------- packed runs (--runs-per-device)

def visible_devices(environ: Mapping[str, str] | None = None, count: int | None = None) -> list[str]:
    """The CUDA devices this process can hand to its runs, as ``CUDA_VISIBLE_DEVICES`` names them: its
    entries when it is set (up to the first empty or negative one, where CUDA stops reading), else
    0..count-1. ``count``: torch's CUDA device count (0 without CUDA), which does not initialise CUDA
    in this process."""
    environ = os.environ if environ is None else environ
    if count is None:
        import torch

        count = torch.cuda.device_count()
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    names = []
    for entry in (e.strip() for e in listed.split(",")):
        if not entry or entry.startswith("-"):
            break
        names.append(entry)
    return names[:count]


def device_slots(devices: Sequence[str], runs_per_device: int) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each run slot: ``runs_per_device`` slots per device, slot k on
    device k mod D (fewer runs than slots spread over the devices first); without a device,
    ``runs_per_device`` slots on the CPU (None: the run's devices left as they are)."""
    if not devices:
        return [None] * runs_per_device
    return [devices[k % len(devices)] for k in range(len(devices) * runs_per_device)]


def packed_env(runs_per_device: int, slot: int, slots: int, device: str | None) -> dict[str, str]:
    """The environment variables of a run in ``slot`` of ``slots``: its packing and, on a GPU, its device."""
    info = {"runs_per_device": runs_per_device, "slot": slot, "slots": slots, "device": device or "cpu"}
    return {PACKED_ENV: json.dumps(info), **({"CUDA_VISIBLE_DEVICES": device} if device is not None else {})}


def last_line(text: object) -> str:
    """The last non-empty line of an error or a stream, for one-line messages."""
    lines = str(text or "").strip().splitlines()
    return lines[-1] if lines else ""


def worker_env(plugins: Sequence[str] = (), threads: int | None = None,
               extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process: the plugins to load, its threads, and ``extra_env`` (a packed
    slot's packing and device)."""
    env = {**os.environ, "LEPTON_BENCH_PLUGINS": ",".join(plugins)}
    env.pop(PACKED_ENV, None)   # packed only when its executor says so
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(extra_env or {})
    return env


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed in this process's memory cgroup
    (cgroup v2 ``memory.events``, v1 ``memory.oom_control``: ``oom_kill N``), or None where unreadable. A
    worker runs in its grid's cgroup, so the count rising over a run that died of SIGKILL says it was the
    OOM killer."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates = [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events"]
        elif "memory" in controllers.split(","):
            candidates = [Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control"]
        else:
            continue
        for f in candidates:
            try:
                for entry in f.read_text().splitlines():
                    key, _, value = entry.partition(" ")
                    if key == "oom_kill":
                        return int(value)
            except (OSError, ValueError):
                continue
    return None


def kernel_oom_record(pid: int | None) -> str:
    """The kernel log's line on an OOM kill of ``pid`` (``dmesg``, where this user may read it), or ''."""
    if pid is None:
        return ""
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    hits = [ln.strip() for ln in log.splitlines()
            if f"Killed process {pid} " in ln or f"Killed process {pid}(" in ln or f",pid={pid}," in ln]
    return hits[-1] if hits else ""


def death(returncode: int, pid: int | None = None, oom_before: int | None = None) -> str:
    """Why a worker process ended without answering, in words: the signal that ended it (by number and
    name), "the kernel's out-of-memory killer" only when the kernel says so (its OOM-kill count rose since
    ``oom_before``, or its log names the process), else the exit code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    sig = -returncode
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    if sig == signal.SIGKILL:
        after = oom_kills()
        record = kernel_oom_record(pid)
        if record or (oom_before is not None and after is not None and after > oom_before):
            return ("killed by the kernel's out-of-memory killer (SIGKILL" + (f"; kernel: {record}" if record else
                    f"; its OOM-kill count {oom_before} -> {after}") + ")")
    return f"killed by signal {sig} ({name}) from outside"


def died(returncode: int, detail: str, pid: int | None = None, oom_before: int | None = None) -> str:
    """The failed record's error for a worker that died: its cause, then the log's last line if it left one."""
    tail = last_line(detail)
    return f"worker died: {death(returncode, pid, oom_before)}" + (f"; {tail}" if tail else "")


def _spawn(args: list[str], env: Mapping[str, str], **kw) -> subprocess.Popen:
    """A worker process in a session of its own (a terminal's Ctrl-C reaches the grid, which stops its
    workers itself), holding the grid's folder lock with it (``outputs.held_lock_fds``)."""
    return subprocess.Popen([sys.executable, "-m", "lepton_bench", "_worker", *args], env=dict(env),
                            start_new_session=True, pass_fds=held_lock_fds(), **kw)


def run_job(job: Job, plugins: Sequence[str] = (), threads: int | None = None,
            extra_env: Mapping[str, str] | None = None, stop: Stop | None = None,
            started: Callable[[subprocess.Popen | None], None] | None = None) -> dict[str, Any]:
    """Train one run in a fresh child process; make sure a record exists afterwards. Runs wherever the
    engine placed it (this machine, a Slurm node, a Ray worker). ``extra_env``: variables of this run
    only (a packed run's slot and device). ``started`` is told of the process (and of its end, with None),
    so a stopping grid can end it; ended while ``stop`` is set, the run is recorded interrupted. Returns a
    short summary."""
    env = worker_env(plugins, threads, extra_env)
    oom_before = oom_kills()
    proc = _spawn([job.config_path, job.record_path], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                  text=True)
    if started:
        started(proc)
    try:
        _, stderr = proc.communicate()
    finally:
        if started:
            started(None)
    # the child may have died before writing (killed, out of memory, segfault): record that
    if stop is not None and stop.is_set():
        ensure_record(job, f"interrupted: {stop.why}", stderr or "", packing(env), status="interrupted")
    ensure_record(job, died(proc.returncode, stderr, proc.pid, oom_before), stderr or "", packing(env))
    return {"run_id": job.run_id, "returncode": proc.returncode}


# ---------------------------------------------------------------- warm workers

class WarmWorker:
    """One ``_worker --serve`` process that trains the jobs it is sent one after another: the imports (torch,
    timm, sklearn: about 12 s here) are paid once, not per run. Each run is set up as in a fresh process
    (seeded in ``prepare``; the previous run's memory released and the peak-RSS mark reset before it: see
    ``grid.serve``). A run that fails ends the process (whatever state it left cannot reach the next run,
    which gets a fresh one); a process that dies (killed, out of memory) has the run recorded failed, and
    the next job starts a new one. Its stderr goes to ``log`` (appended), the last line of which names the
    cause of a death."""

    def __init__(self, env: Mapping[str, str], log: Path, stop: Stop | None = None):
        self.env, self.log, self.stop = dict(env), log, stop
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as err:   # the child keeps its own descriptor
            return _spawn(["--serve"], self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                          text=True)

    def terminate(self) -> None:
        """Ask the process to end now (SIGTERM), the run in hand with it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.terminate()
            except OSError:
                pass

    def run(self, job: Job) -> dict[str, Any]:
        """Train ``job`` in this worker (starting a process if none is alive); make sure a record exists."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        log_from = self.log.stat().st_size if self.log.exists() else 0
        oom_before = oom_kills()
        try:
            proc.stdin.write(json.dumps({"config": job.config_path, "record": job.record_path}) + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()
        except (BrokenPipeError, OSError):   # it died before or while reading the job
            answer = ""
        if answer:
            returncode = int(json.loads(answer)["returncode"])
            if returncode:
                self.close()   # the next run gets a fresh process
            ensure_record(job, "the worker answered without writing a record", packed=packing(self.env))
            return {"run_id": job.run_id, "returncode": returncode}
        returncode = proc.wait()
        self.proc = None
        detail = _read_from(self.log, log_from)
        if self.stop is not None and self.stop.is_set():   # ended by its stopping grid: run again on resume
            ensure_record(job, f"interrupted: {self.stop.why}", detail, packing(self.env), status="interrupted")
        ensure_record(job, died(returncode, detail, proc.pid, oom_before), detail, packing(self.env))
        return {"run_id": job.run_id, "returncode": returncode}

    def close(self) -> None:
        """End the process: its input closed, it exits after the run in hand (killed if it does not)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()


def _read_from(path: Path, offset: int, limit: int = 20_000) -> str:
    """What ``path`` gained from ``offset`` on (its last ``limit`` characters)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")[-limit:]
    except OSError:
        return ""


def ensure_record(job: Job, error: str, detail: str = "", packed: dict[str, Any] | None = None,
                  status: str = "failed") -> None:
    """If no record of this job was written since it started (the worker died, or the engine
    cancelled, timed out or lost the job), record the run as failed with ``error`` (and its packing), or
    as interrupted (its grid stopped it)."""
    if not written_since(Path(job.record_path), job.started):
        cfg = from_dict(json.loads(Path(job.config_path).read_text()))
        write_json_atomic(Path(job.record_path), failed_record(cfg, error[:500], job.started, detail, packed,
                                                               status=status))


class Executor(ABC):
    """Runs jobs somewhere and calls ``done(job)`` as each one ends, in any order."""

    name = ""
    extra: str | None = None   # the pip extra that installs the engine
    packs = False              # runs several runs on one device (--runs-per-device)

    def __init__(self, options: ExecutorOptions, results_dir: Path):
        self.check_options(options)
        self.options, self.results_dir = options, results_dir
        self.stop = Stop()   # the grid sets it to stop (a signal); an engine starts no run once it is set

    @classmethod
    def check_options(cls, options: ExecutorOptions) -> None:
        """Refuse the options this engine would ignore."""
        if options.runs_per_device > 1 and not cls.packs:
            raise ConfigError(f"--runs-per-device is an option of the local executor; {cls.name} places each "
                              "run where its engine's request (--gpus-per-run, --cpus-per-run) fits")

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
    """Child processes on this machine, ``workers`` at a time with cores / workers threads each. With
    ``runs_per_device`` N > 1 (packed runs): N at a time on each visible GPU, each run's
    ``CUDA_VISIBLE_DEVICES`` its slot's device, cores / slots threads each; N at a time on the CPU when no
    GPU is visible or every run asks for ``device=cpu``. A slot is free again when its run ends; every
    packed run learns its slot through ``PACKED_ENV`` and its record says so. Each slot keeps one warm
    worker process (``WarmWorker``, its stderr in ``jobs/worker-<slot>.log``), or with
    ``process_per_run`` starts a fresh process per run."""

    name = "local"
    packs = True

    def run(self, jobs, done):
        o = self.options
        n = o.runs_per_device
        slots: list[str | None] = [None] * o.workers
        if n > 1:
            on_cpu = all(_config_device(job) == "cpu" for job in jobs)
            slots = device_slots([] if on_cpu else visible_devices(), n)
        threads = o.cpus_per_run or max(1, (os.cpu_count() or 1) // len(slots))   # no oversubscription
        free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for k in range(len(slots)):
            free.put(k)

        slot_env = [packed_env(n, k, len(slots), slots[k]) if n > 1 else {} for k in range(len(slots))]
        warm = [WarmWorker(worker_env(o.plugins, threads, slot_env[k]), self.results_dir / "jobs" / f"worker-{k}.log",
                           self.stop) for k in range(len(slots))]
        fresh: dict[int, subprocess.Popen] = {}   # slot -> its process-per-run process, while it runs

        def one(job: Job) -> bool:
            """Run ``job`` in a free slot; False when the grid stopped before it started."""
            if self.stop.is_set():
                return False
            k = free.get()   # never waits: as many threads as slots
            try:
                if o.process_per_run:
                    run_job(job, o.plugins, threads, slot_env[k], self.stop,
                            lambda p, k=k: fresh.__setitem__(k, p) if p else fresh.pop(k, None))
                else:
                    warm[k].run(job)
                return True
            except DiskFullError:
                raise
            except Exception as e:   # a failure to even start the child: that run fails, with its packing
                ensure_record(job, f"could not start the run: {type(e).__name__}: {e}", packed=packing(slot_env[k]))
                raise
            finally:
                free.put(k)

        pool = ThreadPoolExecutor(max_workers=len(slots))
        futures = {pool.submit(one, job): job for job in jobs}
        pending = set(futures)

        def settle(finished) -> None:
            for fut in finished:
                job = futures[fut]
                if fut.cancelled():
                    continue
                try:
                    if not fut.result():
                        continue   # never started: left for the resume
                except DiskFullError:
                    raise
                except Exception as e:   # a failure to even start the child: that run fails
                    ensure_record(job, f"could not start the run: {type(e).__name__}: {e}")
                done(job)

        try:
            while pending and not self.stop.is_set():
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                settle(finished)
        except BaseException as e:   # a full disk, a second Ctrl-C: stop the workers before it goes up
            self.stop.request(str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise
        finally:
            if self.stop.is_set():   # end the runs in flight; each is recorded interrupted by its thread
                for f in pending:
                    f.cancel()
                for w in warm:
                    w.terminate()
                for p in list(fresh.values()):
                    p.terminate()
                finished, pending = wait(pending, timeout=STOP_GRACE_S)
                for w in warm:   # what did not end in time is killed
                    if w.proc is not None and w.proc.poll() is None:
                        w.proc.kill()
                for p in list(fresh.values()):
                    p.kill()
                finished2, _ = wait(pending, timeout=STOP_GRACE_S)
                try:
                    settle(finished | finished2)
                except DiskFullError:
                    pass   # already on its way up, or the disk is full: the records folder is the truth
            pool.shutdown(wait=True, cancel_futures=True)
            for w in warm:
                w.close()


STOP_GRACE_S = 20   # seconds a stopping grid waits for its runs to end before it kills them


def _config_device(job: Job) -> str:
    """The ``device`` a job's config asks for (auto when unreadable)."""
    try:
        return str(json.loads(Path(job.config_path).read_text()).get("device", "auto"))
    except (OSError, ValueError, AttributeError):
        return "auto"


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
            if self.stop.is_set():   # the grid stops: the jobs still queued or running are cancelled
                for other in handles:
                    if not other.done():
                        other.cancel(check=False)
                break


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
                if self.stop.is_set():   # the grid stops: the tasks still pending are cancelled
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    break
        finally:
            if started_here:
                ray.shutdown()

