"""Executors: the smoke grid through submitit's local executor and a local Ray, exactly once each,
with the same results as the local process pool."""

from __future__ import annotations

import json
import re

import pytest

from lepton_bench.cli import main
from lepton_bench.errors import ConfigError
from lepton_bench.grid.executors import EXECUTORS, ExecutorOptions
from lepton_bench.results import read_records
from lepton_bench.tasks import TASKS

from .test_grid import grid_args

VARIANTS = "stl-conll2003,hard-ew"
# one thread per run under every executor: float sums then add up in the same order, bit for bit
THREADS = ["--cpus-per-run", "1"]


def results(out) -> dict[str, dict]:
    recs = read_records(out / "smoke" / "runs.jsonl")
    assert len(recs) == len({r["run_id"] for r in recs}), "a run was recorded twice"
    return {r["run_id"]: r for r in recs}


@pytest.fixture(scope="module")
def local_results(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert main(grid_args(data_dir, out, "--variants", VARIANTS, *THREADS)) == 0
    return results(out)


@pytest.mark.parametrize("executor", [["--executor", "submitit", "--cluster", "local"],
                                      ["--executor", "ray"]], ids=["submitit", "ray"])
def test_smoke_grid_through_an_engine_matches_the_local_executor(executor, data_dir, tmp_path, local_results,
                                                                 capsys):
    args = grid_args(data_dir, tmp_path, "--variants", VARIANTS, *executor, *THREADS)
    assert main(args) == 0
    got = results(tmp_path)
    assert set(got) == set(local_results)   # same runs, same ids
    for run_id, rec in got.items():
        assert rec["status"] == "ok"
        assert rec["metrics"] == local_results[run_id]["metrics"]   # same seed, same numbers
        assert rec["curves"]["train_loss"] == local_results[run_id]["curves"]["train_loss"]
    capsys.readouterr()
    assert main(args) == 0   # resume: nothing is submitted again
    assert "2 already recorded, 0 finished" in capsys.readouterr().out
    assert len(read_records(tmp_path / "smoke" / "runs.jsonl")) == 2


def test_a_missing_engine_names_the_extra_to_install(monkeypatch, tmp_path):
    import importlib

    def no_engines(name, *a, **kw):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", no_engines)
    for name, extra in (("submitit", "slurm"), ("ray", "ray")):
        ex = EXECUTORS.get(name)(ExecutorOptions(), tmp_path)
        with pytest.raises(ConfigError, match=rf"pip install 'lepton-bench\[{extra}\]'"):
            ex.run([], lambda job: None)


def test_executor_flags_and_config_file_are_checked(data_dir, tmp_path, capsys):
    assert main(grid_args(data_dir, tmp_path, "--executor", "slurm")) == 2
    assert "unknown executor 'slurm'" in capsys.readouterr().err
    bad = tmp_path / "ex.json"
    bad.write_text(json.dumps({"partition": "gpu", "gpu_per_run": 1}))
    assert main(grid_args(data_dir, tmp_path, "--executor", "submitit", "--executor-config", str(bad))) == 2
    assert "unknown keys gpu_per_run" in capsys.readouterr().err
    assert not (tmp_path / "smoke" / "runs.jsonl").exists()


def test_prepare_fills_the_cache_that_runs_then_read(data_dir, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    assert main(["prepare", "--grid", "smoke", "--data-dir", str(data_dir), "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    files = sorted(cache.glob("*.pt"))
    assert {f.name.rsplit("-", 1)[0] for f in files} == set(TASKS)   # plugins' tasks too (tests/conftest.py)
    # one file per data setting the grid plans, each named once in the table: the pretrained variants
    # tokenize CoNLL-2003 with MiniLM's WordPiece, so its tasks have a second setting
    assert sorted(re.findall(r"\b[a-z0-9_]+-[0-9a-f]{20}\.pt\b", out)) == [f.name for f in files]
    assert "cifar10-" in out
    stamps = {f: f.stat().st_mtime_ns for f in files}
    monkeypatch.setenv("LEPTON_BENCH_CACHE", str(cache))
    assert main(grid_args(data_dir, tmp_path / "res", "--variants", "stl-conll2003")) == 0
    assert {f: f.stat().st_mtime_ns for f in sorted(cache.glob("*.pt"))} == stamps   # read, not rebuilt
    assert main(["prepare", "--grid", "smoke", "--tasks", "imdb"]) == 2
    capsys.readouterr()
    assert main(["prepare", "--tasks", "imdbb"]) == 2
    assert "unknown task 'imdbb'; did you mean imdb" in capsys.readouterr().err
