"""The test setup itself: a plain pytest run neither leaves a .benchmarks/ folder in the checkout nor rewrites
the committed benchmark figures."""

from __future__ import annotations

import tempfile

from .conftest import ROOT


def test_benchmark_storage_is_outside_the_checkout_and_no_figures_are_written_unless_asked(pytestconfig):
    storage = pytestconfig.getoption("benchmark_storage")
    assert storage.startswith(f"file://{tempfile.gettempdir()}") and str(ROOT) not in storage
    if not pytestconfig.getoption("save_results", False):
        assert pytestconfig.getoption("benchmark_json") is None
