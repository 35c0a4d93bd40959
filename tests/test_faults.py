"""Faults around a grid, as an operator meets them: an output folder that cannot be written, a full disk, a
second grid on the same folder, SIGTERM or SIGINT mid-run. Each ends in one clear line and loses nothing."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lepton_bench import outputs, results
from lepton_bench.cli import main
from lepton_bench.errors import LeptonError
from lepton_bench.outputs import DiskFullError, GridLock, check_writable
from lepton_bench.results import read_record_files, read_records, write_json_atomic

from .conftest import ROOT
from .test_grid import grid_args

ONE = ("--variants", "stl-conll2003")
TWO = ("--variants", "stl-conll2003,stl-conll2003_pos")


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp*"))


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("lepton-bench: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)`` -> a folder on a fresh tmpfs of that size (unmounted afterwards); skipped where this
    user may not mount one."""
    mounted = []

    def make(size: str, name: str = "mnt") -> Path:
        where = tmp_path / name
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()[:80]})")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


# ---------------------------------------------------------------- output folders checked before any run

@pytest.mark.parametrize("code, reason", [(errno.EROFS, "read-only file system"),
                                          (errno.EACCES, "permission denied"),
                                          (errno.ENOENT, "a parent folder is missing")])
def test_an_unwritable_out_is_one_line_with_the_reason_and_exit_2(data_dir, tmp_path, monkeypatch, capsys, code,
                                                                   reason):
    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)
    started = []
    monkeypatch.setattr("lepton_bench.grid.runner.run_grid", lambda *a, **k: started.append(1))
    assert main(grid_args(data_dir, tmp_path / "out", *ONE)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--out: cannot write in the folder {tmp_path / 'out' / 'smoke'}: {reason}" in line
    assert not started


def test_a_read_only_mount_and_a_file_in_the_way_are_refused_before_any_run(data_dir, tmp_path, tmpfs, capsys):
    ro = tmpfs("1m")
    (ro / "smoke").mkdir()
    (ro / "smoke" / "runs.jsonl").write_text("")   # an unfinished grid's folder
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    assert main(grid_args(data_dir, ro, *ONE)) == 2
    assert "cannot write in the folder" in one_error_line(capsys.readouterr().err)
    assert main(grid_args(data_dir, ro / "new", *ONE)) == 2
    assert "cannot create the folder" in one_error_line(capsys.readouterr().err)
    (tmp_path / "afile").write_text("x")
    assert main(grid_args(data_dir, tmp_path / "afile", *ONE)) == 2
    assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)
    # a single run's --out too
    assert main(["run", "--variant", "stl-conll2003", "--data-dir", str(data_dir), "--out", str(ro),
                 "--no-progress"]) == 2
    assert "read-only file system" in one_error_line(capsys.readouterr().err)


def test_check_writable_creates_the_folder(tmp_path):
    check_writable(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())


# ---------------------------------------------------------------- a full disk

def test_a_write_that_fails_for_lack_of_space_leaves_no_temp_file_and_names_the_folder(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "records").mkdir()
    write_json_atomic(tmp_path / "records" / "a.json", {"x": 1})
    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(DiskFullError) as e:
        write_json_atomic(tmp_path / "records" / "b.json", {"x": 2})
    msg = str(e.value)
    assert msg.startswith(f"no space left on the device of {tmp_path / 'records'} (") and "free of" in msg
    with pytest.raises(DiskFullError):
        results.merge(tmp_path)
    with pytest.raises(DiskFullError):
        results.append_record(tmp_path / "adhoc.jsonl", {k: None for k in results.RECORD_KEYS})
    assert leftovers(tmp_path) == [] and not (tmp_path / "records" / "b.json").exists()
    assert (tmp_path / "adhoc.jsonl").read_bytes() == b""   # no torn line


def test_a_full_disk_mid_grid_stops_it_in_one_line_and_the_next_start_rebuilds_runs_jsonl(data_dir, tmp_path,
                                                                                          monkeypatch, capsys):
    out = tmp_path / "out"
    real_merge = results.merge
    calls = []

    def merge_then_full(folder):
        calls.append(1)
        if len(calls) >= 2:   # the first merge (at the start) goes through; the one after the first run does not
            def full(fd):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(results.os, "fsync", full)
        return real_merge(folder)

    monkeypatch.setattr("lepton_bench.grid.runner.merge", merge_then_full)
    assert main(grid_args(data_dir, out, *TWO)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"no space left on the device of {out / 'smoke'}" in line and "resumes" in line
    assert leftovers(out) == []
    recorded = read_record_files(out / "smoke")
    assert len(recorded) >= 1 and len(read_records(out / "smoke" / "runs.jsonl")) < len(recorded) + 1
    monkeypatch.undo()
    assert main([*grid_args(data_dir, out, *TWO), "--dry-run"]) == 0   # the next start: rebuilt from records/
    main(grid_args(data_dir, out, *TWO))
    assert {r["run_id"] for r in read_records(out / "smoke" / "runs.jsonl")} == set(read_record_files(out / "smoke"))


def test_a_full_tmpfs_stops_the_grid_cleanly(data_dir, tmpfs, capsys):
    out = tmpfs("48k")   # 12 pages: the folders, the job files and about one record
    code = main(grid_args(data_dir, out, "--variants", "stl-conll2003,stl-conll2003_pos,stl-conll2003_chunk,stl-imdb"))
    err = capsys.readouterr().err
    if code == 0:
        pytest.skip("the records fitted in this tmpfs")
    assert code == 2 and "no space left on the device of" in one_error_line(err)
    assert leftovers(out) == []


# ---------------------------------------------------------------- one grid per folder

def test_a_second_grid_on_the_same_folder_names_the_holder_and_exits_2(data_dir, tmp_path, capsys):
    lock = GridLock(tmp_path / "out" / "smoke")
    lock.acquire()
    try:
        assert main(grid_args(data_dir, tmp_path / "out", *ONE)) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"is in use by another grid (process {os.getpid()}, since " in line and "--wait" in line
        assert not (tmp_path / "out" / "smoke" / "records").exists()   # nothing trained
        assert main([*grid_args(data_dir, tmp_path / "out", *ONE), "--dry-run"]) == 0   # looking is fine
    finally:
        lock.release()


def test_wait_starts_when_the_other_grid_ends(data_dir, tmp_path, capsys):
    lock = GridLock(tmp_path / "out" / "smoke")
    lock.acquire()
    threading.Timer(3, lock.release).start()
    assert main([*grid_args(data_dir, tmp_path / "out", *ONE), "--wait"]) == 0
    assert "waiting for" in capsys.readouterr().err
    assert len(read_record_files(tmp_path / "out" / "smoke")) == 1


def test_a_stale_lock_is_taken_over_with_a_note(data_dir, tmp_path, capsys):
    gone = subprocess.Popen(["true"])
    gone.wait()
    folder = tmp_path / "out" / "smoke"
    folder.mkdir(parents=True)
    (folder / ".lock").write_text(json.dumps({"pid": gone.pid, "started": "2026-12-01T00:00:00"}))
    assert main(grid_args(data_dir, tmp_path / "out", *ONE)) == 0
    assert f"took over the stale lock of {folder}, left by process {gone.pid}" in capsys.readouterr().err
    assert (folder / ".lock").read_text() == ""   # released at the end


def test_a_lock_held_in_the_same_process_is_still_exclusive(tmp_path):
    a, b = GridLock(tmp_path), GridLock(tmp_path)
    a.acquire()
    with pytest.raises(LeptonError, match=f"process {os.getpid()}"):
        b.acquire()
    a.release()
    b.acquire()
    b.release()


def test_local_workers_hold_the_lock_with_their_grid(tmp_path):
    from lepton_bench.grid.executors import WarmWorker, worker_env

    lock = GridLock(tmp_path / "out")
    lock.acquire()
    worker = WarmWorker(worker_env(threads=1), tmp_path / "worker.log")
    try:
        worker.proc = worker._start()
        fds = {os.readlink(f) for f in Path(f"/proc/{worker.proc.pid}/fd").iterdir() if f.is_symlink()}
        assert str(lock.path) in fds   # a worker left running by a killed grid keeps the folder locked
    finally:
        worker.close()
        lock.release()


# ---------------------------------------------------------------- SIGTERM and SIGINT

def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    out = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(ln.split(":\t", 1) for ln in status.read_text().splitlines() if ":\t" in ln)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and fields.get("State", "").strip()[:1] != "Z":
            out.add(int(status.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_grid_its_workers_and_records_the_run_in_flight_interrupted(data_dir, tmp_path, sig):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lepton_bench", *grid_args(data_dir, out, *TWO, "--steps", "100000",
                                                              "--runs-per-device", "2")]
    grid = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    logs = [out / "smoke" / "jobs" / f"worker-{k}.log" for k in (0, 1)]
    while time.time() < deadline and not (all(p.exists() for p in logs) and len(children(grid.pid)) == 2):
        time.sleep(0.5)
    time.sleep(6)   # both in training
    workers = children(grid.pid)
    assert len(workers) == 2
    grid.send_signal(sig)
    _, err = grid.communicate(timeout=90)
    assert grid.returncode == 128 + sig, err
    last = err.strip().splitlines()[-1]
    assert last == (f"grid smoke: stopped by {signal.Signals(sig).name}: 0 finished, 0 failed, 2 interrupted, 0 left; "
                    "run the same command to resume"), err
    time.sleep(0.5)
    assert not any(alive(p) for p in workers)   # no worker outlives its grid
    recs = read_records(out / "smoke" / "runs.jsonl")
    assert sorted(r["status"] for r in recs) == ["interrupted", "interrupted"]
    assert all(r["error"].startswith(f"interrupted: stopped by {signal.Signals(sig).name}") for r in recs)
    plan = subprocess.run([*cmd, "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert "2 runs into" in plan.stdout and "2 to run" in plan.stdout   # the resume runs them again
    assert leftovers(out) == []
