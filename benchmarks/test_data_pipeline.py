"""The data pipeline: first load (decode/tokenize), cached load, batches/s, evaluation throughput.

Full datasets. The cached load of all three tasks should take seconds, and drawing a batch
should cost a small fraction of a training step: ``stream_vs_step`` is batches/s of the
task's train stream over steps/s of its single-task baseline (the fastest consumer).
"""

from __future__ import annotations

import shutil
import statistics

import pytest

from lepton_bench.data import load_task
from lepton_bench.run.evaluation import evaluate_group
from lepton_bench.tasks import TASKS, input_group

from .conftest import DATA, Steps, timed

TASK_NAMES = TASKS.list()
# one task per input group for what depends on the input only (loads, batches, evaluation passes):
# the other tasks of a group read the same rows
INPUTS = [t for t in TASK_NAMES if input_group(t) == t]


def test_cached_load_of_all_tasks(benchmark):
    """Tensors from the cache (built first, untimed, when missing): what every run pays."""
    def load_all():
        return [load_task(TASKS.get(t), TASKS.get(t).defaults, str(DATA)) for t in TASK_NAMES]

    load_all()
    benchmark.group = "data: cached load"
    data = benchmark.pedantic(load_all, rounds=3, warmup_rounds=1)
    benchmark.extra_info["examples"] = sum(sum(d.sizes().values()) for d in data)
    if benchmark.enabled:
        assert benchmark.stats.stats.median < 5.0, "loading the cached tensors should take seconds"


@pytest.mark.parametrize("task", INPUTS)
def test_first_load(benchmark, task, tmp_path):
    """Parquet -> checked, decoded (images) or tokenized (text) tensors, into an empty cache."""
    spec = TASKS.get(task)
    cache = tmp_path / "cache"

    def fresh():
        shutil.rmtree(cache, ignore_errors=True)

    # untimed (CI): a slice is enough to exercise the path
    limits = {} if benchmark.enabled else {"limit_train": 1000, "limit_eval": 200}
    benchmark.group = "data: first load"
    data = benchmark.pedantic(lambda: load_task(spec, spec.defaults, str(DATA), cache_dir=cache, **limits),
                              setup=fresh, rounds=1)
    examples = sum(data.sizes().values())
    benchmark.extra_info["examples"] = examples
    if benchmark.enabled:
        benchmark.extra_info["examples_per_s"] = examples / benchmark.stats.stats.median


@pytest.mark.parametrize("task", INPUTS)
def test_train_stream(benchmark, setup_of, task):
    """Batches/s of a task's train stream on the device, against its STL training step."""
    s = setup_of(f"stl-{task}", limit_train=None, limit_eval=None)
    stream = s.streams[s.group_of[task]]
    benchmark.group = "data: train batches"
    benchmark.pedantic(lambda: next(stream), rounds=50, warmup_rounds=5)
    if benchmark.enabled:
        steps = Steps(s)
        step_s = statistics.median(timed(steps, s.device) for _ in range(5))
        ratio = step_s / benchmark.stats.stats.median
        benchmark.extra_info.update({"batches_per_s": 1 / benchmark.stats.stats.median,
                                     "stl_steps_per_s": 1 / step_s, "stream_vs_step": ratio})
        assert ratio >= 10, f"drawing a {task} batch costs more than a tenth of its training step"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_evaluation(benchmark, setup_of, task):
    """Validation-set throughput of the single-task model (argmax and metrics included)."""
    s = setup_of(f"stl-{task}", limit_eval=2000)
    spec, cfg = s.specs[task], s.cfg.tasks[task]
    group = s.eval_data[s.group_of[task]]
    n = len(group.splits["validation"])
    benchmark.group = "evaluation"
    metrics, _ = benchmark.pedantic(
        lambda: evaluate_group(s.model, [spec], group, "validation", cfg.eval_batch_size, s.device,
                               s.runtime["precision"]), rounds=3, warmup_rounds=1)
    assert spec.primary in metrics[task]
    benchmark.extra_info["examples"] = n
    if benchmark.enabled:
        benchmark.extra_info["samples_per_s"] = n / benchmark.stats.stats.median
