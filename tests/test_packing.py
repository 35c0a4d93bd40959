"""Packed runs (``--runs-per-device N``): the local executor's slots (N per visible GPU, each run's
CUDA_VISIBLE_DEVICES its slot's device; N on the CPU without one), the records that say so, unchanged
run ids, and a packed run that fails (out of memory, killed) recorded failed while the others finish."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time

import pytest

from lepton_bench import report
from lepton_bench.cli import main
from lepton_bench.errors import ConfigError
from lepton_bench.grid import executors
from lepton_bench.grid.executors import (
    PACKED_ENV,
    ExecutorOptions,
    Job,
    LocalExecutor,
    device_slots,
    packed_env,
    packing,
    visible_devices,
)
from lepton_bench.grid.plan import plan
from lepton_bench.results import read_records

from .conftest import TINY
from .test_grid import grid_args

VARIANTS = "stl-conll2003,hard-ew"


def test_each_slot_gets_one_device_n_slots_per_device():
    assert device_slots(["0", "1"], 2) == ["0", "1", "0", "1"]    # fewer runs than slots: spread first
    assert device_slots(["0"], 3) == ["0", "0", "0"]
    assert device_slots(["2", "GPU-7f3a"], 1) == ["2", "GPU-7f3a"]
    assert device_slots([], 3) == [None, None, None]              # no GPU: N processes on the CPU


@pytest.mark.parametrize("listed, count, devices", [
    (None, 2, ["0", "1"]),              # unset: torch's count
    (None, 0, []),                      # no CUDA
    ("2,3", 2, ["2", "3"]),             # the parent's own selection is handed on, not renumbered
    (" 1 , 0 ", 2, ["1", "0"]),
    ("", 0, []),                        # every device hidden
    ("-1", 0, []),
    ("3,-1,0", 1, ["3"]),               # CUDA stops at the first invalid entry
    ("0,1", 0, []),                     # listed, but this torch sees none (a CPU build)
])
def test_visible_devices_read_cuda_visible_devices_as_cuda_does(listed, count, devices):
    environ = {} if listed is None else {"CUDA_VISIBLE_DEVICES": listed}
    assert visible_devices(environ, count) == devices


def test_a_run_learns_its_packing_from_one_variable(monkeypatch):
    import torch

    from lepton_bench.run.measure import environment

    env = packed_env(2, 3, 4, "1")
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert packing(env) == {"runs_per_device": 2, "slot": 3, "slots": 4, "device": "1"}
    cpu = packed_env(2, 0, 2, None)
    assert "CUDA_VISIBLE_DEVICES" not in cpu and packing(cpu)["device"] == "cpu"
    assert packing({}) is None and packing({PACKED_ENV: "not json"}) is None and packing({PACKED_ENV: "2"}) is None
    monkeypatch.delenv(PACKED_ENV, raising=False)
    assert "packed" not in environment(torch.device("cpu"))   # a run alone: its record as before
    monkeypatch.setenv(PACKED_ENV, cpu[PACKED_ENV])
    assert environment(torch.device("cpu"))["packed"] == packing(cpu)


def fake_jobs(tmp_path, n: int, device: str = "auto") -> list[Job]:
    jobs = []
    for i in range(n):
        cfg = tmp_path / f"r{i}.config.json"
        cfg.write_text(json.dumps({"device": device}))
        jobs.append(Job(f"r{i}", str(cfg), str(tmp_path / f"r{i}.json"), "2026-01-01T00:00:00+00:00"))
    return jobs


def patch_runner(monkeypatch, warm: bool, fake) -> None:
    """Route the local executor's runs to ``fake(job, threads, extra_env)``: through a fake warm worker per
    slot (its process environment's threads and slot variables), or a fake ``run_job`` per run."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if not warm:
        monkeypatch.setattr(executors, "run_job", lambda job, plugins=(), threads=None, extra_env=None, stop=None,
                            started=None: fake(job, threads, extra_env))
        return

    class FakeWarmWorker:
        def __init__(self, env, log, stop=None):
            self.env, self.proc = env, None

        def run(self, job):
            slot = {k: self.env[k] for k in (PACKED_ENV, "CUDA_VISIBLE_DEVICES") if k in self.env}
            return fake(job, int(self.env["OMP_NUM_THREADS"]), slot or None)

        def terminate(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(executors, "WarmWorker", FakeWarmWorker)


@pytest.mark.parametrize("warm", [True, False], ids=["warm-workers", "process-per-run"])
def test_the_local_executor_packs_n_runs_on_each_gpu_and_frees_a_slot_when_its_run_ends(tmp_path, monkeypatch,
                                                                                         warm):
    """Two fake GPUs, 2 runs per device, 7 runs: 4 at a time (2 on each GPU), each with its slot's
    CUDA_VISIBLE_DEVICES and cores / 4 threads; freed slots take the next runs."""
    monkeypatch.setattr(executors, "visible_devices", lambda: ["0", "1"])
    first = threading.Barrier(4, timeout=60)   # the first 4 runs only go on once all 4 are running
    lock, running, seen, peak = threading.Lock(), [], [], []

    def fake_run(job, threads, extra_env):
        info = packing(extra_env)
        with lock:
            running.append(extra_env["CUDA_VISIBLE_DEVICES"])
            seen.append((job.run_id, threads, info, extra_env["CUDA_VISIBLE_DEVICES"]))
            peak.append(sorted(running))
            starts = len(seen)
        if starts <= 4:
            first.wait()
        time.sleep(0.01)
        with lock:
            running.remove(extra_env["CUDA_VISIBLE_DEVICES"])
        return {"run_id": job.run_id, "returncode": 0}

    patch_runner(monkeypatch, warm, fake_run)
    done = []
    LocalExecutor(ExecutorOptions(runs_per_device=2, process_per_run=not warm), tmp_path).run(
        fake_jobs(tmp_path, 7), done.append)
    assert sorted(j.run_id for j in done) == [f"r{i}" for i in range(7)]
    assert len(seen) == 7
    assert ["0", "0", "1", "1"] in peak                       # 4 at once, two on each GPU
    assert all(p.count("0") <= 2 and p.count("1") <= 2 for p in peak)   # never more than N on one
    assert {t for _, t, _, _ in seen} == {max(1, (os.cpu_count() or 1) // 4)}
    for _, _, info, device in seen:
        assert info["runs_per_device"] == 2 and info["slots"] == 4 and 0 <= info["slot"] < 4
        assert info["device"] == device == ["0", "1"][info["slot"] % 2]   # a slot keeps its device
    assert sorted(i["slot"] for _, _, i, _ in seen[:4]) == [0, 1, 2, 3]

    # runs that all ask for the CPU are packed on the CPU, GPUs or not
    seen.clear()
    cpu_seen = []
    patch_runner(monkeypatch, warm, lambda job, threads, extra_env: cpu_seen.append((threads, dict(extra_env))))
    LocalExecutor(ExecutorOptions(runs_per_device=3, process_per_run=not warm), tmp_path).run(
        fake_jobs(tmp_path, 2, "cpu"), lambda j: None)
    assert all("CUDA_VISIBLE_DEVICES" not in env and packing(env)["device"] == "cpu" and packing(env)["slots"] == 3
               for _, env in cpu_seen)
    assert {t for t, _ in cpu_seen} == {max(1, (os.cpu_count() or 1) // 3)}


@pytest.mark.parametrize("warm", [True, False], ids=["warm-workers", "process-per-run"])
def test_unpacked_runs_are_not_told_they_are_packed(tmp_path, monkeypatch, warm):
    """--workers as before: no slot variable, and none inherited from this process's environment."""
    calls, run_job = [], executors.run_job
    monkeypatch.setenv(PACKED_ENV, packed_env(2, 0, 2, None)[PACKED_ENV])
    patch_runner(monkeypatch, warm, lambda job, threads, extra_env: calls.append(extra_env or None))
    LocalExecutor(ExecutorOptions(workers=2, process_per_run=not warm), tmp_path).run(fake_jobs(tmp_path, 2),
                                                                                      lambda j: None)
    assert calls == [None, None]
    captured = {}

    def fake_popen(cmd, env, **kw):
        captured.update(env)
        raise RuntimeError("not started")

    monkeypatch.setattr(executors.subprocess, "Popen", fake_popen)
    with pytest.raises(RuntimeError):
        run_job(fake_jobs(tmp_path, 1)[0])
    assert PACKED_ENV not in captured


@pytest.mark.parametrize("flags, message", [
    (["--runs-per-device", "0"], "--runs-per-device must be a whole number of at least 1, got 0"),
    (["--runs-per-device", "-2"], "--runs-per-device must be a whole number of at least 1, got -2"),
    (["--runs-per-device", "2", "--workers", "2"], "--workers and --runs-per-device both set how many runs"),
    (["--runs-per-device", "2", "--executor", "submitit"], "--runs-per-device is an option of the local executor"),
    (["--runs-per-device", "2", "--device", "cuda:1"], "--device cuda:1 with --runs-per-device"),
])
def test_bad_runs_per_device_values_are_refused_before_anything_runs(flags, message, data_dir, tmp_path, capsys):
    assert main(grid_args(data_dir, tmp_path, "--variants", VARIANTS, *flags)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()


def test_runs_per_device_is_a_grid_option_and_checked_in_every_form(data_dir, tmp_path, capsys):
    assert main(["run", "--variant", "hard-ew", "--runs-per-device", "2"]) == 2
    assert "--runs-per-device: grid option; use with --grid" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(grid_args(data_dir, tmp_path, "--runs-per-device", "two"))
    assert e.value.code == 2 and "invalid int value: 'two'" in capsys.readouterr().err
    conf = tmp_path / "ex.json"
    conf.write_text(json.dumps({"runs_per_device": "2"}))
    assert main(grid_args(data_dir, tmp_path, "--executor-config", str(conf))) == 2
    assert "--runs-per-device must be a whole number of at least 1, got '2'" in capsys.readouterr().err
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="--runs-per-device must be"):
            ExecutorOptions(runs_per_device=bad)
    with pytest.raises(ConfigError, match="option of the local executor"):
        executors.EXECUTORS.get("ray")(ExecutorOptions(runs_per_device=2), tmp_path)
    assert not (tmp_path / "smoke").exists()


def test_packed_processes_on_cpu_record_their_packing_under_unchanged_run_ids(data_dir, tmp_path, capsys):
    """The real local executor, 2 runs packed on this CPU: both at once, each its own process with its slot
    and cores / 2 threads, under the run ids of the unpacked plan; the report says they were packed."""
    assert main(grid_args(data_dir, tmp_path, "--variants", VARIANTS, "--runs-per-device", "2")) == 0
    recs = {r["run_id"]: r for r in read_records(tmp_path / "smoke" / "runs.jsonl")}
    planned = plan("smoke", variants=VARIANTS, overrides=[*TINY, "train.steps=2"])
    assert set(recs) == {r.run_id for r in planned}   # packing is how, not what: same ids
    assert all(r["status"] == "ok" for r in recs.values())
    packs = [r["env"]["packed"] for r in recs.values()]
    assert all(p["runs_per_device"] == 2 and p["slots"] == 2 and p["device"] == "cpu" for p in packs)
    assert sorted(p["slot"] for p in packs) == [0, 1]   # two at once: two slots
    assert {r["env"]["torch_threads"] for r in recs.values()} == {max(1, (os.cpu_count() or 1) // 2)}
    a, b = recs.values()
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]   # they ran side by side
    assert all(r["cost"]["memory"]["peak_rss_mb"] > 0 for r in recs.values())        # each its own process
    text = report.readme(report.analyse("smoke", list(recs.values())), "smoke/runs.jsonl", [])
    setting = text.split("## Setting")[1].split("\n## ")[0]
    assert "- Packed runs: 2 of 2 ran packed" in setting and "2 runs at 2 per device on cpu" in setting


@pytest.fixture
def failing_plugin(tmp_path, monkeypatch):
    """A test-only plugin: a variant whose step runs out of memory, and one whose process is killed (as the
    kernel's out-of-memory killer does)."""
    (tmp_path / "packed_failures_plugin.py").write_text(textwrap.dedent("""
        import os
        import signal

        import torch

        from lepton_bench.variants import Variant, register_variant
        from lepton_bench.methods import WEIGHTINGS, Weighting

        class OutOfMemory(Weighting):
            '''Runs out of memory at the first step (for tests).'''
            def combine(self, losses):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        class Killed(Weighting):
            '''Its process is killed at the first step (for tests).'''
            def combine(self, losses):
                os.kill(os.getpid(), signal.SIGKILL)

        if "oom-test" not in WEIGHTINGS:
            WEIGHTINGS.register("oom-test", OutOfMemory)
            WEIGHTINGS.register("killed-test", Killed)
            register_variant(Variant("oom-test", "hard", "oom-test", tasks=("imdb",), help="runs out of memory"))
            register_variant(Variant("killed-test", "hard", "killed-test", tasks=("imdb",), help="is killed"))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return "packed_failures_plugin"


def test_a_packed_run_out_of_memory_is_recorded_failed_and_the_others_finish(data_dir, tmp_path, failing_plugin,
                                                                            capsys):
    out = tmp_path / "res"
    args = ["--plugin", failing_plugin, *grid_args(data_dir, out, "--variants", "oom-test,killed-test,stl-conll2003",
                                                   "--runs-per-device", "2")]
    assert main(args) == 1   # non-zero: something failed
    recs = {r["variant"]: r for r in read_records(out / "smoke" / "runs.jsonl")}
    assert recs["stl-conll2003"]["status"] == "ok"
    assert recs["oom-test"]["status"] == "failed"
    assert recs["oom-test"]["error"].startswith("TrainingError: out of memory on cpu in oom-test")
    assert recs["killed-test"]["status"] == "failed"
    assert "worker died: killed by signal 9 (SIGKILL) from outside" in recs["killed-test"]["error"]
    assert "out of memory" not in recs["killed-test"]["error"]   # the kernel did not say so
    # every record says it was packed: the worker's own, and the one its parent wrote for a killed worker
    assert all(r["env"]["packed"]["runs_per_device"] == 2 for r in recs.values())
    err = capsys.readouterr().err
    assert "failed: oom-test" in err and "failed: killed-test" in err


@pytest.mark.parametrize("warm", [True, False], ids=["warm-workers", "process-per-run"])
def test_a_run_that_cannot_start_is_recorded_failed_with_its_packing(tmp_path, monkeypatch, warm):
    def cannot_start(job, threads, extra_env):
        raise OSError("no such interpreter")

    patch_runner(monkeypatch, warm, cannot_start)
    done = []
    LocalExecutor(ExecutorOptions(runs_per_device=2, process_per_run=not warm), tmp_path).run(
        fake_jobs(tmp_path, 2, "cpu"), done.append)
    assert len(done) == 2
    for job in done:
        rec = json.loads(open(job.record_path).read())
        assert rec["status"] == "failed" and rec["error"] == "could not start the run: OSError: no such interpreter"
        assert rec["env"]["packed"]["runs_per_device"] == 2 and rec["env"]["packed"]["device"] == "cpu"
