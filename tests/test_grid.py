"""The grid: plans, resume, exactly-once records after SIGKILL, failures recorded and contained."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lepton_bench.cli import main
from lepton_bench.grid.plan import plan
from lepton_bench.grid.presets import GRIDS
from lepton_bench.results import merge, read_record_files, read_records
from lepton_bench.variants import VARIANTS

from .conftest import ROOT, TINY

SETS = [a for o in [*TINY, "train.steps=2"] for a in ("--set", o)]


def grid_args(data_dir, out, *extra):
    return ["run", "--grid", "smoke", "--data-dir", str(data_dir), "--out", str(out), "--no-progress",
            *SETS, *extra]


def test_grids_are_registered_and_plan_variants_times_seeds():
    assert {"smoke", "quick", "full"} <= set(GRIDS)
    runs = plan("smoke")
    assert len(runs) == len(VARIANTS)   # every variant, one seed
    assert len({r.run_id for r in runs}) == len(runs)
    quick = plan("quick")
    assert {r.config.seed for r in quick} == {0, 1, 2}
    assert {"stl-cifar10", "stl-imdb", "stl-conll2003", "hard-ew"} <= {r.config.variant for r in quick}
    narrowed = plan("smoke", seeds=2, variants="stl-*,hard-ew")
    assert len(narrowed) == 2 * (len(VARIANTS.list("stl-*")) + 1)   # one STL per task (plugins' too)


def test_dry_run_prints_the_plan_and_runs_nothing(data_dir, tmp_path, capsys):
    assert main(grid_args(data_dir, tmp_path, "--variants", "stl-*", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "stl-imdb" in out and f"{len(VARIANTS.list('stl-*'))} runs" in out and "to run" in out
    assert not (tmp_path / "smoke" / "runs.jsonl").exists()


def test_grid_runs_resumes_and_never_duplicates(data_dir, tmp_path, capsys):
    args = grid_args(data_dir, tmp_path, "--variants", "stl-conll2003,stl-imdb")
    assert main(args) == 0
    recs = read_records(tmp_path / "smoke" / "runs.jsonl")
    assert sorted(r["variant"] for r in recs) == ["stl-conll2003", "stl-imdb"]
    assert all(r["status"] == "ok" for r in recs)
    capsys.readouterr()
    assert main(args) == 0   # everything recorded: nothing runs again
    assert "2 already recorded, 0 finished" in capsys.readouterr().out
    assert len(read_records(tmp_path / "smoke" / "runs.jsonl")) == 2


@pytest.fixture
def boom_plugin(tmp_path, monkeypatch):
    """A test-only plugin: a variant whose weighting raises."""
    (tmp_path / "boom_plugin.py").write_text(textwrap.dedent("""
        from lepton_bench.variants import Variant, register_variant
        from lepton_bench.methods import WEIGHTINGS, Weighting

        class Boom(Weighting):
            '''Raises at the first step (for tests).'''
            def combine(self, losses):
                raise RuntimeError("boom: this weighting always fails")

        if "boom" not in WEIGHTINGS:
            WEIGHTINGS.register("boom", Boom)
            register_variant(Variant("boom-test", "hard", "boom", tasks=("imdb",), help="always fails"))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return "boom_plugin"


def test_a_failing_run_is_recorded_and_the_grid_goes_on(data_dir, tmp_path, boom_plugin, capsys):
    out = tmp_path / "res"
    args = ["--plugin", boom_plugin, *grid_args(data_dir, out, "--variants", "boom-test,stl-conll2003")]
    assert main(args) == 1   # non-zero: something failed
    recs = {r["variant"]: r for r in read_records(out / "smoke" / "runs.jsonl")}
    assert recs["stl-conll2003"]["status"] == "ok"
    assert recs["boom-test"]["status"] == "failed"
    assert recs["boom-test"]["error"] == "RuntimeError: boom: this weighting always fails"
    assert "failed: boom-test" in capsys.readouterr().err
    # a second pass skips both; --retry-failed runs the failed one again, still one record each
    assert main(args) == 0
    assert main([*args, "--retry-failed"]) == 1
    recs = read_records(out / "smoke" / "runs.jsonl")
    assert sorted(r["variant"] for r in recs) == ["boom-test", "stl-conll2003"]


def test_sigkill_mid_grid_then_resume_records_every_run_once(data_dir, tmp_path):
    out = tmp_path / "res"
    four = "stl-cifar10,stl-imdb,stl-conll2003,hard-ew"
    cmd = [sys.executable, "-m", "lepton_bench", *grid_args(data_dir, out, "--variants", four)]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    records = out / "smoke" / "records"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(records.glob("*.json"))) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)   # the grid and its running child, mid-run
    proc.wait()
    first = len(read_record_files(out / "smoke"))
    assert 1 <= first < 4
    # its worker (a session of its own) finishes the run in hand and holds the folder's lock till then: --wait
    assert subprocess.run([*cmd, "--wait"], cwd=ROOT, capture_output=True).returncode == 0
    recs = read_records(out / "smoke" / "runs.jsonl")
    assert sorted(r["variant"] for r in recs) == ["hard-ew", "stl-cifar10", "stl-conll2003", "stl-imdb"]
    assert len({r["run_id"] for r in recs}) == 4 and all(r["status"] == "ok" for r in recs)
    for line in (out / "smoke" / "runs.jsonl").read_text().splitlines():
        json.loads(line)


def test_merge_ignores_torn_record_files(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "x.json").write_text('{"schema_version": 1, "run_id": "x"')   # torn
    merge(tmp_path)
    assert (tmp_path / "runs.jsonl").read_text() == ""


def test_a_large_grid_keeps_its_records_gzipped_with_reproducible_bytes(tmp_path, monkeypatch):
    """Over COMPRESS_ABOVE the merge writes runs.jsonl.gz (no timestamp: the same records give the same
    bytes) and removes runs.jsonl; the report, the resume and a fresh clone read it; below, plain again.
    A gzip file that does not decompress is a clear error."""
    import lepton_bench.results as results
    from lepton_bench.errors import LeptonError
    from lepton_bench.results import adopt, runs_path, write_json_atomic

    recs = [{"schema_version": 1, "run_id": f"r{i}", "status": "ok", "finished_at": f"2026-12-02T00:00:0{i}"}
            for i in range(3)]
    for r in recs:
        write_json_atomic(tmp_path / "records" / f"{r['run_id']}.json", r)
    monkeypatch.setattr(results, "COMPRESS_ABOVE", 100)
    assert merge(tmp_path) == tmp_path / "runs.jsonl.gz" == runs_path(tmp_path)
    assert not (tmp_path / "runs.jsonl").exists()
    first = (tmp_path / "runs.jsonl.gz").read_bytes()
    assert merge(tmp_path) and (tmp_path / "runs.jsonl.gz").read_bytes() == first
    assert [r["run_id"] for r in read_records(runs_path(tmp_path))] == ["r0", "r1", "r2"]
    shutil.rmtree(tmp_path / "records")   # a fresh clone: the committed file only, no record files
    adopt(tmp_path)
    assert len(read_record_files(tmp_path)) == 3
    monkeypatch.setattr(results, "COMPRESS_ABOVE", 10_000)
    assert merge(tmp_path) == tmp_path / "runs.jsonl" == runs_path(tmp_path)
    assert not (tmp_path / "runs.jsonl.gz").exists()
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(LeptonError, match="not a readable gzip file"):
        read_records(tmp_path / "bad.jsonl.gz")


def test_grid_arguments_are_checked(tmp_path, capsys):
    assert main(["run", "--grid", "smok", "--out", str(tmp_path)]) == 2
    assert "did you mean smoke" in capsys.readouterr().err
    assert main(["run", "--variant", "hard-ew", "--seeds", "3"]) == 2
    assert "--seeds: grid option; use with --grid" in capsys.readouterr().err
    assert main(["run", "--variant", "hard-ew", "--dry-run", "--workers", "2"]) == 2
    assert "--workers, --dry-run: grid options" in capsys.readouterr().err
    assert main(["run", "--grid", "smoke", "--variants", "nothing-*", "--out", str(tmp_path)]) == 2
    assert "no variant of grid smoke matches" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--tasks", "imdb"], "--tasks is a single-run option"),
    (["--seed", "1"], "--seed is a single-run option (a grid runs seeds 0..N-1: use --seeds N)"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--limit-train", "0"], "--limit-train must be at least 1"),
    (["--data-dir", "/no/such/folder"], "--data-dir /no/such/folder: no such folder"),
])
def test_grid_mode_refuses_what_it_would_ignore(flags, message, tmp_path, capsys):
    assert main(["run", "--grid", "smoke", "--out", str(tmp_path), "--no-progress", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()   # nothing started, nothing written


def test_a_data_dir_without_a_tasks_folder_fails_before_the_grid_starts(data_dir, tmp_path, capsys):
    import shutil

    partial = tmp_path / "data"
    shutil.copytree(data_dir / "imdb", partial / "imdb")
    assert main(["run", "--grid", "smoke", "--data-dir", str(partial), "--out", str(tmp_path / "res")]) == 2
    assert "cifar10: no folder" in capsys.readouterr().err
    assert not (tmp_path / "res" / "smoke").exists()


def test_grid_limits_and_steps_given_on_the_command_line_reach_every_run(tmp_path, capsys):
    assert main(["run", "--grid", "smoke", "--limit-train", "64", "--limit-eval", "32", "--steps", "2",
                 "--variants", "stl-*", "--dry-run", "--out", str(tmp_path)]) == 0
    runs = plan("smoke", variants="stl-*", limit_train=64, limit_eval=32, overrides=["train.steps=2"])
    out = capsys.readouterr().out
    assert runs and all(r.run_id in out for r in runs)
    assert {(r.config.limit_train, r.config.limit_eval, r.config.train.steps) for r in runs} == {(64, 32, 2)}
    assert not {r.run_id for r in runs} & {r.run_id for r in plan("smoke", variants="stl-*")}


def test_a_committed_runs_jsonl_without_record_files_is_kept(data_dir, tmp_path, capsys):
    """A fresh clone has runs.jsonl but no records/ (ignored by git): nothing is lost or re-run."""
    import shutil

    args = grid_args(data_dir, tmp_path, "--variants", "stl-conll2003")
    assert main(args) == 0
    shutil.rmtree(tmp_path / "smoke" / "records")
    capsys.readouterr()
    assert main(args) == 0
    assert "1 already recorded, 0 finished" in capsys.readouterr().out
    assert len(read_records(tmp_path / "smoke" / "runs.jsonl")) == 1
