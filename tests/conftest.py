"""Shared fixtures: real data slices from ../shared/data, a private cache, tiny configs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LEPTON_BENCH_DATA", ROOT.parent / "shared" / "data"))

# Small enough for seconds-long tests, large enough that every split has both IMDB classes.
SLICE_ROWS = {"train": 160, "validation": 48, "test": 48}
TINY = ["model.dim=32", "model.depth=1", "model.heads=2", "model.image_widths=[8,16]",
        "train.eval_every=2", "train.log_every=1", "train.timing_warmup=1"]


def short_real_run(variant: str, data_dir: Path, *overrides: str) -> list[dict]:
    """A 3-step run of ``variant`` on NER + POS (one input group) from the real slices: its training-loss
    curve, checked to have every step with finite losses of both tasks."""
    import math

    from lepton_bench.run.train import run
    from lepton_bench.variants import make_config

    tasks = ("conll2003", "conll2003_pos")
    cfg = make_config(variant, list(tasks), overrides=[*TINY, "train.steps=3", *overrides],
                      device="cpu", data_dir=str(data_dir), limit_eval=24)
    curve = run(cfg)["curves"]["train_loss"]
    assert [p["step"] for p in curve] == [1, 2, 3]
    assert all(math.isfinite(p[t]) for p in curve for t in tasks)
    return curve


def pytest_configure(config):
    # pytest-benchmark's storage (unused: results go to benchmarks/results/) out of the checkout, not an
    # empty .benchmarks/ left behind by every run; it reads the option after this (its configure runs last)
    if config.getoption("benchmark_storage", None) == "file://./.benchmarks":
        config.option.benchmark_storage = f"file://{Path(tempfile.gettempdir()) / 'lepton_bench-benchmarks'}"
    if not SHARED_DATA.is_dir():
        raise pytest.UsageError(f"tests need the offline data mirrors at {SHARED_DATA} "
                                f"(set LEPTON_BENCH_DATA to their folder)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test session gets its own tensor cache, so no test reads a stale one (at the default cap)."""
    monkeypatch.setenv("LEPTON_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("LEPTON_BENCH_CACHE_MAX_GB", raising=False)


def write_slice(src: Path, dst: Path, rows: dict[str, int], seed: int = 0) -> Path:
    """Copy a seeded random slice of each split's parquet file, keeping the Hub layout."""
    rng = np.random.default_rng(seed)
    for f in sorted((src / "data").glob("*.parquet")):
        split = f.name.split("-")[0]
        table = pq.read_table(f)
        idx = np.sort(rng.choice(table.num_rows, size=min(rows[split], table.num_rows), replace=False))
        (dst / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(idx), dst / "data" / f.name)
    return dst


def dataset_folders() -> list[str]:
    """The ``--data-dir`` folder of every registered task's dataset, once each (tasks of one
    dataset share it), in registration order."""
    from lepton_bench.tasks import TASKS

    return list(dict.fromkeys(spec.dataset.folder for spec in TASKS.in_order()))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Real slices of every registered task's dataset (plugins' included), in folders named like
    the full mirrors."""
    root = tmp_path_factory.mktemp("slices")
    for folder in dataset_folders():
        if not (SHARED_DATA / folder).is_dir():
            pytest.fail(f"no offline mirror {SHARED_DATA / folder} of a registered task's dataset")
        write_slice(SHARED_DATA / folder, root / folder, SLICE_ROWS)
    return root


@pytest.fixture
def copy_task(data_dir, tmp_path):
    """A private, editable copy of one task's dataset slice: ``copy_task('imdb') -> root``, with
    ``root/<its dataset folder>``."""
    import shutil

    from lepton_bench.tasks import TASKS

    def make(task: str) -> Path:
        root, folder = tmp_path / "data", TASKS.get(task).dataset.folder
        shutil.copytree(data_dir / folder, root / folder)
        return root

    return make


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny random BERT folder (``hf:<it>``), built offline; skipped without the [pretrained] extra."""
    pytest.importorskip("transformers", reason="hf: stems need the [pretrained] extra")
    from .tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture
def stem_example(request):
    """``stem_example(registered stem) -> (full stem name, config overrides)``: plain stems as they
    are; stem families with a tiny offline member of theirs."""
    from .tiny_models import TIMM_TINY

    def example(stem: str) -> tuple[str, list[str]]:
        if stem == "hf":
            return f"hf:{request.getfixturevalue('tiny_bert')}", []
        if stem == "timm":
            return f"timm:{TIMM_TINY}", ["model.pretrained=false"]
        from lepton_bench.models.stems import STEMS

        assert not STEMS.get(stem).argument, f"give stem family {stem} a tiny example in tests/conftest.py"
        return stem, []

    return example


# Installed plugins (CI installs examples/plugin) and the test-only plugin task
# (tests/pos_demo_plugin.py, written as a user would) join the registries before the tests are
# collected, so the registry-parametrized tests train their variants too.
from lepton_bench.plugins import load_plugins  # noqa: E402

TEST_PLUGINS = ["tests.pos_demo_plugin"]
load_plugins(TEST_PLUGINS)
