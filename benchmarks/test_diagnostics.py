"""What the diagnostics cost: one measurement (diagnostics.diagnose) against training steps.

A round is one measurement and one training step on the same batches, as the loop runs them every
``train.diagnose_every`` steps (the measurement first, the clock paused for it). The overhead figure
is the measurement over ``diagnose_every`` training steps: the share of training time the default
interval adds (medians of the rounds after warm-up). It must stay under 5%.
"""

from __future__ import annotations

import statistics

import pytest

from lepton_bench.run.diagnostics import diagnose
from lepton_bench.run.train import next_batches, train_step

from .conftest import timed

ROUNDS, WARMUP = 8, 2
MAX_OVERHEAD = 0.05


@pytest.mark.parametrize("variant", ["hard-ew", "tagging-hard-ew"])
def test_diagnostics_overhead(benchmark, setup_of, variant):
    s = setup_of(variant)
    every = s.cfg.train.diagnose_every
    steps, measures, state = [], [], {"step": 0}

    def batches():
        state["step"] += 1
        return (next_batches(s, state["step"]),), {}

    def round_(b):
        measures.append(timed(lambda: diagnose(s, b), s.device))
        steps.append(timed(lambda: train_step(s, b), s.device))

    benchmark.group = "diagnostics (one measurement + one training step)"
    benchmark.pedantic(round_, setup=batches, rounds=ROUNDS, warmup_rounds=WARMUP)
    assert len(measures) == len(steps) >= 1
    if benchmark.enabled:
        step, measure = statistics.median(steps[WARMUP:]), statistics.median(measures[WARMUP:])
        overhead = measure / (every * step)
        benchmark.extra_info.update({"step_ms": 1000 * step, "diagnose_ms": 1000 * measure,
                                     "diagnose_every": every, "overhead": overhead})
        assert overhead < MAX_OVERHEAD, f"a measurement every {every} steps adds {overhead:.1%} to training"
