"""What a grid run costs beyond its training: process start, imports, data load, model build, FLOP count,
test pass and record, per run of the smoke grid (its ``hard-ew``: 6 steps on 256 examples per task).

A round is one whole job as the local executor runs it: a fresh ``_worker`` process per run
(``--process-per-run``) or the next run of a warm worker (the default; its first run, which pays the
imports, is the warm-up round). The fixed cost of a run is its wall time less the training and
validation its record times (``train_seconds`` + ``eval_seconds`` + ``diagnose_seconds``).
"""

from __future__ import annotations

import json
import statistics
import time

import pytest

from lepton_bench.grid.executors import Job, WarmWorker, run_job, worker_env
from lepton_bench.grid.plan import plan
from lepton_bench.results import now_iso

from .conftest import DATA

ROUNDS, WARMUP = 3, 1


@pytest.mark.parametrize("mode", ["process-per-run", "warm-worker"])
def test_per_run_fixed_cost(benchmark, tmp_path, mode):
    (run,) = plan("smoke", variants="hard-ew", data_dir=str(DATA))
    config = tmp_path / "run.config.json"
    config.write_text(json.dumps(run.config.to_dict()))
    worker = WarmWorker(worker_env(), tmp_path / "worker.log") if mode == "warm-worker" else None
    walls, records, state = [], [], {"n": 0}

    def job():
        state["n"] += 1
        return (Job(run.run_id, str(config), str(tmp_path / f"{state['n']}.json"), now_iso()),), {}

    def round_(j: Job):
        t0 = time.perf_counter()
        out = worker.run(j) if worker else run_job(j)
        walls.append(time.perf_counter() - t0)
        assert out["returncode"] == 0, (tmp_path / "worker.log").read_text() if worker else out
        records.append(json.loads(open(j.record_path).read()))

    benchmark.group = "per-run fixed cost (a smoke-grid hard-ew run)"
    try:
        benchmark.pedantic(round_, setup=job, rounds=ROUNDS, warmup_rounds=WARMUP)
    finally:
        if worker:
            worker.close()
    assert all(r["status"] == "ok" for r in records)
    if worker:   # one process served every round
        assert [r["env"]["worker"]["run"] for r in records] == list(range(1, len(records) + 1))
    if benchmark.enabled:
        timed = [r["cost"]["train_seconds"] + r["cost"]["eval_seconds"] + r["cost"].get("diagnose_seconds", 0.0)
                 for r in records]
        fixed = [w - t for w, t in zip(walls[WARMUP:], timed[WARMUP:], strict=True)]
        benchmark.extra_info.update({"wall_s": statistics.median(walls[WARMUP:]),
                                     "train_and_eval_s": statistics.median(timed[WARMUP:]),
                                     "fixed_s": statistics.median(fixed)})
