"""Warm workers: one process serves run after run (imports paid once) and each run comes out exactly as it
would from a fresh process; a failed run ends its worker, a killed worker is replaced, and the peak-memory
figures are each run's own (the high-water mark reset before it)."""

from __future__ import annotations

import json

import pytest

from lepton_bench.cli import main
from lepton_bench.grid.executors import Job, WarmWorker, run_job, worker_env
from lepton_bench.grid.plan import plan
from lepton_bench.results import now_iso, read_records
from lepton_bench.run.measure import peak_rss_mb, reset_peak_rss, rss_mb

from .conftest import TINY
from .test_grid import boom_plugin, grid_args  # noqa: F401  (a fixture)

VARIANTS = "stl-conll2003,hard-famo,hard-ew"   # FAMO keeps state across steps: none may leak into the next run


def jobs_of(data_dir, tmp_path, names: list[str]) -> dict[str, Job]:
    """A job per planned smoke run of ``names`` (config files written), by variant."""
    runs = {r.config.variant: r for r in plan("smoke", variants=VARIANTS, data_dir=str(data_dir),
                                               overrides=[*TINY, "train.steps=3"])}
    started, jobs = now_iso(), {}
    for i, name in enumerate(names):
        cfg = tmp_path / f"{i}.config.json"
        cfg.write_text(json.dumps(runs[name].config.to_dict()))
        jobs[f"{name}#{i}"] = Job(runs[name].run_id, str(cfg), str(tmp_path / f"{i}.record.json"), started)
    return jobs


def record(job: Job) -> dict:
    return json.loads(open(job.record_path).read())


def same_training(a: dict, b: dict) -> bool:
    return (a["status"] == b["status"] == "ok" and a["metrics"] == b["metrics"]
            and a["curves"] == b["curves"] and a["selection"] == b["selection"])


def test_a_warm_worker_trains_each_run_bit_identically_to_a_fresh_process(data_dir, tmp_path):
    names = ["hard-famo", "stl-conll2003", "hard-ew", "hard-famo"]   # the first run again, last
    jobs = jobs_of(data_dir, tmp_path, names)
    worker = WarmWorker(worker_env(threads=1), tmp_path / "worker.log")
    try:
        for job in jobs.values():
            assert worker.run(job)["returncode"] == 0
        pid = worker.proc.pid
    finally:
        worker.close()
    recs = [record(j) for j in jobs.values()]
    assert [r["env"]["worker"]["run"] for r in recs] == [1, 2, 3, 4]   # one process served all four
    assert same_training(recs[0], recs[3])                              # nothing of run 1 reached run 4
    fresh = jobs_of(data_dir, tmp_path / "fresh", ["stl-conll2003"]) if (tmp_path / "fresh").mkdir() is None else {}
    (job,) = fresh.values()
    assert run_job(job, threads=1)["returncode"] == 0
    assert "worker" not in record(job)["env"]
    assert same_training(recs[1], record(job))                          # as from a process of its own
    for r in recs:   # each run's peak over the base it started from, both recorded
        mem = r["cost"]["memory"]
        assert mem["peak_rss_mb"] >= mem["rss_at_start_mb"] > 0
    assert pid > 0 and worker.proc is None   # closed


def test_a_failed_run_ends_its_worker_and_the_next_run_gets_a_fresh_one(data_dir, tmp_path, boom_plugin,  # noqa: F811
                                                                        capsys):
    out = tmp_path / "res"
    args = ["--plugin", boom_plugin, *grid_args(data_dir, out, "--variants", "boom-test,stl-conll2003,hard-ew")]
    assert main(args) == 1
    recs = {r["variant"]: r for r in read_records(out / "smoke" / "runs.jsonl")}
    assert recs["boom-test"]["status"] == "failed" and recs["boom-test"]["error"].startswith("RuntimeError: boom")
    # in the order they ran (one slot): a process serves run after run until one fails; the next gets a new one
    expected, runs = 1, []
    for r in sorted(recs.values(), key=lambda r: (r["started_at"], r["finished_at"])):
        runs.append((r["variant"], r["env"]["worker"]["run"], expected))
        expected = 1 if r["status"] == "failed" else expected + 1
    assert all(got == want for _, got, want in runs), runs
    assert (out / "smoke" / "jobs" / "worker-0.log").exists()


def test_a_killed_worker_is_recorded_and_replaced(data_dir, tmp_path, monkeypatch):
    jobs = list(jobs_of(data_dir, tmp_path, ["stl-conll2003", "stl-conll2003"]).values())
    worker = WarmWorker(worker_env(threads=1), tmp_path / "worker.log")
    try:
        assert worker.run(jobs[0])["returncode"] == 0
        worker.proc.kill()            # as the out-of-memory killer would, between two runs
        worker.proc.wait()
        assert worker.run(jobs[1])["returncode"] == 0   # a fresh process took it
    finally:
        worker.close()
    assert record(jobs[1])["env"]["worker"]["run"] == 1


def test_the_peak_rss_mark_resets_so_each_run_reports_its_own():
    pytest.importorskip("numpy")
    import numpy as np

    big = np.ones(64 * 2**20 // 8)   # 64 MiB resident
    high = peak_rss_mb()
    del big
    if not reset_peak_rss():
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    assert peak_rss_mb() < high - 32          # the mark restarted at the current, smaller RSS
    assert abs(peak_rss_mb() - rss_mb()) < 32


def test_process_per_run_is_a_grid_flag(data_dir, tmp_path):
    assert main(grid_args(data_dir, tmp_path, "--variants", "stl-conll2003", "--process-per-run")) == 0
    (rec,) = read_records(tmp_path / "smoke" / "runs.jsonl")
    assert rec["status"] == "ok" and "worker" not in rec["env"]
    assert not (tmp_path / "smoke" / "jobs" / "worker-0.log").exists()


# ---------------------------------------------------------------- why a worker died

def test_a_dead_worker_is_named_by_its_signal_and_oom_only_when_the_kernel_says_so(monkeypatch):
    from lepton_bench.grid import executors

    monkeypatch.setattr(executors, "kernel_oom_record", lambda pid: "")
    monkeypatch.setattr(executors, "oom_kills", lambda: 3)
    assert executors.death(-15) == "killed by signal 15 (SIGTERM) from outside"
    assert executors.death(-9, 123, oom_before=3) == "killed by signal 9 (SIGKILL) from outside"
    assert executors.death(-9, 123, oom_before=2) == ("killed by the kernel's out-of-memory killer (SIGKILL; its "
                                                      "OOM-kill count 2 -> 3)")
    assert executors.death(1) == "exit code 1"
    monkeypatch.setattr(executors, "kernel_oom_record",
                        lambda pid: f"Out of memory: Killed process {pid} (python) total-vm:1kB")
    assert executors.death(-9, 77, oom_before=None) == (
        "killed by the kernel's out-of-memory killer (SIGKILL; kernel: Out of memory: Killed process 77 (python) "
        "total-vm:1kB)")
    # the log's last line after the semicolon, or nothing
    monkeypatch.setattr(executors, "kernel_oom_record", lambda pid: "")
    assert executors.died(-15, "") == "worker died: killed by signal 15 (SIGTERM) from outside"
    assert executors.died(-15, "a\nlast words\n") == ("worker died: killed by signal 15 (SIGTERM) from outside; "
                                                      "last words")


def test_a_worker_killed_from_outside_mid_run_is_recorded_so(data_dir, tmp_path):
    import os
    import signal
    import threading
    import time

    job = list(jobs_of(data_dir, tmp_path, ["stl-conll2003"]).values())[0]
    cfg = json.loads(open(job.config_path).read())
    cfg["train"]["steps"] = 100_000   # long enough to be killed in the middle
    open(job.config_path, "w").write(json.dumps(cfg))
    worker = WarmWorker(worker_env(threads=1), tmp_path / "worker.log")

    def kill_when_training():
        deadline = time.time() + 120
        while time.time() < deadline and not (worker.proc and (tmp_path / "worker.log").exists()):
            time.sleep(0.2)
        time.sleep(8)
        os.kill(worker.proc.pid, signal.SIGTERM)

    threading.Thread(target=kill_when_training, daemon=True).start()
    try:
        assert worker.run(job)["returncode"] == -signal.SIGTERM
    finally:
        worker.close()
    rec = record(job)
    assert rec["status"] == "failed" and rec["error"].startswith("worker died: killed by signal 15 (SIGTERM) from "
                                                                 "outside")
    assert "memory" not in rec["error"] and not rec["error"].endswith("; ")
