"""Shared setup of the benchmarks: real data, the real model, results named by machine.

``pytest benchmarks/ --benchmark-only`` measures; with ``--save-results`` it writes
``benchmarks/results/<device>-<device name>-torch<version>.json`` (pytest-benchmark's JSON with
every timing and each benchmark's ``extra_info``); ``python benchmarks/table.py`` turns it into
the README's tables. A plain ``pytest`` (CI) runs every benchmark once, untimed, as a test.

``LEPTON_BENCH_DATA`` (default ``../shared/data``) and ``LEPTON_BENCH_DEVICE`` (default ``auto``)
choose the data and the device.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lepton_bench.plugins import load_plugins
from lepton_bench.run.measure import cpu_name, now, sync
from lepton_bench.run.train import Setup, next_batches, prepare, train_step
from lepton_bench.variants import make_config

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("LEPTON_BENCH_DATA", ROOT.parent / "shared" / "data"))
DEVICE = os.environ.get("LEPTON_BENCH_DEVICE", "auto")
RESULTS = Path(__file__).resolve().parent / "results"

load_plugins()


def machine_tag(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{device.type}-{name}-torch{torch.__version__}").strip("-")


def pytest_addoption(parser):
    parser.addoption("--save-results", action="store_true",
                     help="write the timings to benchmarks/results/<machine>.json (replacing it: run every "
                          "benchmark when saving)")


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"benchmarks need the offline data mirrors at {DATA} "
                                f"(set LEPTON_BENCH_DATA to their folder)")
    if config.getoption("benchmark_storage") == "file://./.benchmarks":   # not an empty .benchmarks/ in the checkout
        config.option.benchmark_storage = f"file://{Path(tempfile.gettempdir()) / 'lepton_bench-benchmarks'}"
    named = config.args_source != pytest.Config.ArgsSource.TESTPATHS
    asked = config.getoption("benchmark_only") or config.getoption("benchmark_enable")
    if not (named or asked):
        # a bare `pytest` (the README's test command, CI): run each benchmark once, untimed
        config.option.benchmark_disable = True
    # the committed figures are replaced only when asked: a run of one file would leave only its own entries
    if config.getoption("save_results") and config.getoption("benchmark_json") is None:
        from lepton_bench.run.measure import resolve_device

        RESULTS.mkdir(exist_ok=True)
        config.option.benchmark_json = RESULTS / f"{machine_tag(resolve_device(DEVICE))}.json"


def pytest_terminal_summary(terminalreporter, config):
    """The figures pytest-benchmark's own table has no column for (ratios, rates)."""
    session = getattr(config, "_benchmarksession", None)
    rows = [(b.fullname.split("::")[-1], b.extra_info) for b in getattr(session, "benchmarks", [])
            if b.extra_info]
    if not rows:
        return
    terminalreporter.section("lepton_bench figures")
    for name, info in rows:
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        terminalreporter.write_line(f"{name}: {shown}")


@pytest.fixture
def setup_of() -> Callable[..., Setup]:
    """``setup_of('hard-ew')``: a variant built exactly as ``lepton_bench run`` builds it."""

    def make(variant: str, **fields) -> Setup:
        # full data, as a run has it: the same cached tensors, and samplers see the real sizes
        fields = {"device": DEVICE, "data_dir": str(DATA), **fields}
        return prepare(make_config(variant, **fields))

    return make


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of ``fn()``, with queued device work finished on both sides."""
    t0 = now(device)
    fn()
    return now(device) - t0


class Steps:
    """Consecutive training steps of a Setup, as the loop runs them (draw, then step)."""

    def __init__(self, s: Setup):
        self.s, self.step = s, 0

    def __call__(self) -> None:
        self.step += 1
        train_step(self.s, next_batches(self.s, self.step))
        sync(self.s.device)
