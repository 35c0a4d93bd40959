"""The command line as a user meets it: help, list, runs, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lepton_bench.cli import main
from lepton_bench.results import read_records

from .conftest import ROOT, TINY


def tiny_args(data_dir, out, *extra):
    sets = [a for o in TINY for a in ("--set", o)]
    return ["run", "--data-dir", str(data_dir), "--out", str(out), "--steps", "3", "--limit-eval", "16",
            "--no-progress", *sets, *extra]


def test_module_entry_point_help_and_list():
    # --plugin is read before the parser is built: the plugin's task is in run's help
    out = subprocess.run([sys.executable, "-m", "lepton_bench", "--plugin", "tests.pos_demo_plugin", "run",
                          "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--variant", "--tasks", "--seed", "--device", "--data-dir", "--steps", "--out", "--set"):
        assert flag in out.stdout
    assert "conll2003_pos_demo" in " ".join(out.stdout.split())
    out = subprocess.run([sys.executable, "-m", "lepton_bench", "list"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0 and "hard-ew" in out.stdout and "stl-cifar10" in out.stdout


def test_list_kinds_and_patterns(capsys):
    assert main(["list", "tasks"]) == 0
    listed = {line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("|")}
    assert {"cifar10", "imdb", "conll2003", "conll2003_pos", "conll2003_chunk", "cifar10_coarse",
            "conll2003_spans"} <= listed
    assert main(["list", "variants", "stl-*"]) == 0
    out = capsys.readouterr().out
    assert "stl-imdb" in out and "hard-ew" not in out
    assert main(["list", "variants", "nothing*"]) == 1


def test_run_appends_one_record(data_dir, tmp_path, capsys):
    assert main(tiny_args(data_dir, tmp_path, "--variant", "stl-imdb")) == 0
    recs = read_records(tmp_path / "runs.jsonl")
    assert len(recs) == 1 and recs[0]["variant"] == "stl-imdb"
    assert "record appended" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--variant", "hard-eww"], "unknown variant 'hard-eww'; did you mean hard-ew, "),
    (["--variant", "hard-ew", "--tasks", "imbd"], "unknown task 'imbd'; did you mean imdb?"),
    (["--variant", "stl-imdb", "--tasks", "imdb", "cifar10"], "single-task"),
    (["--variant", "hard-ew", "--set", "train.lrr=1"], "did you mean lr?"),
    (["--variant", "hard-ew", "--steps", "0"], "--steps must be at least 1"),
    (["--variant", "hard-ew", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_arguments_give_one_line_and_write_nothing(data_dir, tmp_path, capsys, args, message):
    assert main(tiny_args(data_dir, tmp_path, *args)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "runs.jsonl").exists()


def test_bad_data_fails_cleanly_and_keeps_earlier_results(copy_task, tmp_path, capsys):
    root = copy_task("imdb")
    out = tmp_path / "res"
    assert main(tiny_args(root, out, "--variant", "stl-imdb")) == 0
    before = (out / "runs.jsonl").read_bytes()
    path = next((root / "imdb" / "data").glob("test-*"))
    path.write_bytes(b"PAR1 garbage")
    capsys.readouterr()
    assert main(tiny_args(root, out, "--variant", "stl-imdb", "--seed", "1")) == 2
    err = capsys.readouterr().err
    assert "not a readable parquet file" in err and str(path) in err and "Traceback" not in err
    assert (out / "runs.jsonl").read_bytes() == before
    json.loads(before)


def test_missing_data_dir(tmp_path, capsys):
    assert main(["run", "--variant", "hard-ew", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cuda_asked_for_without_cuda(data_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(tiny_args(data_dir, tmp_path, "--variant", "stl-imdb", "--device", "cuda")) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_stem_flag_is_checked_before_anything_runs(tmp_path, capsys):
    base = ["run", "--variant", "stl-imdb", "--out", str(tmp_path)]
    assert main([*base, "--stem", "imdb"]) == 2
    assert "expected TASK=NAME" in capsys.readouterr().err
    assert main([*base, "--stem", "imdb=embeding"]) == 2
    assert "did you mean embedding?" in capsys.readouterr().err
    assert main([*base, "--stem", "imbd=embedding"]) == 2
    assert "unknown task 'imbd'" in capsys.readouterr().err
    assert main(["list", "stems"]) == 0
    assert "embedding" in capsys.readouterr().out
    assert not (tmp_path / "runs.jsonl").exists()


def test_run_help_lists_the_registered_tasks(capsys):
    from lepton_bench.grid.presets import GRIDS
    from lepton_bench.tasks import TASKS

    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())   # argparse wraps lines
    assert f"instead of the variant's own: {' '.join(TASKS.list())}" in text
    assert f"registered grid: {', '.join(GRIDS.list())}" in text


def test_output_into_a_closed_pipe_ends_quietly():
    """``lepton-bench list variants | head -2``: the reader leaves early; no BrokenPipe traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "lepton_bench", "list", "variants"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()   # gone before the child has written anything (it is still importing)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert err == ""   # before: "Exception ignored ... BrokenPipeError: [Errno 32] Broken pipe"


def test_an_error_message_is_cut_to_its_first_line(monkeypatch, capsys):
    from lepton_bench import cli
    from lepton_bench.errors import DataError

    def fail(args):
        raise DataError("first line of the error\n  details pyarrow or a plugin added\n")

    monkeypatch.setattr(cli, "cmd_list", fail)
    assert main(["list"]) == 2
    assert capsys.readouterr().err == "lepton-bench: error: first line of the error\n"
