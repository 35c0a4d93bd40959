"""Training-step time of every registered variant (each architecture, weighting and sampler).

One round is what the training loop does per step: draw each task's batch, then
``train_step`` (forward, losses, weighting/aggregation, backward, clip, AdamW, schedule).
``extra_info`` keeps the steps a run needs relative to a step of every task, so step time x
that factor compares whole runs (one-task samplers run T steps for one of 'all'). Their steps
cost what the drawn task costs, so they run T x the rounds and are compared by the mean.
"""

from __future__ import annotations

import pytest

from lepton_bench.run.sampling import SAMPLERS
from lepton_bench.variants import VARIANTS

from .conftest import Steps


@pytest.mark.parametrize("variant", VARIANTS.list())
def test_step_time(benchmark, setup_of, variant):
    s = setup_of(variant)
    v = VARIANTS.get(variant)
    benchmark.group = "train step"
    benchmark.extra_info.update({
        "architecture": v.architecture, "weighting": v.weighting, "sampler": v.sampler,
        "steps_factor": 1 if SAMPLERS.get(v.sampler).every_task_every_step else len(s.names),
        "flops_per_step": sum(s.flops[n] for n in s.sampler.tasks_at(1)),
    })
    steps = Steps(s)
    benchmark.pedantic(steps, rounds=5 * benchmark.extra_info["steps_factor"], warmup_rounds=2)
    assert steps.step >= 1


def test_bayesagg_step_time_after_its_warmup(benchmark, setup_of):
    """hard-bayesagg_mtl's aggregating steps (its 200 warm-up steps are plain sums, which the test above times):
    a window of 2 steps, so the timed rounds are aggregating ones and every second refreshes the full-data prior
    (the default refreshes it every 200 steps: the median is the ordinary step)."""
    s = setup_of("hard-bayesagg_mtl",
                 overrides=["weighting_args.bayesagg_window=2", "weighting_args.bayesagg_warmup=2"])
    benchmark.group = "train step"
    benchmark.extra_info.update({"architecture": "hard", "weighting": "bayesagg_mtl", "steps_factor": 1})
    steps = Steps(s)
    for _ in range(2):   # its warm-up steps, before any round (an untimed run of the suite makes one round)
        steps()
    benchmark.pedantic(steps, rounds=5, warmup_rounds=2)
    assert steps.step >= 3
