"""The tensor cache's cap: least-recently-used eviction, the cap's variable, and the ``cache`` command."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from lepton_bench import cache as C
from lepton_bench import data as D
from lepton_bench.cli import main
from lepton_bench.errors import ConfigError
from lepton_bench.tasks import TASKS

DAY = 86400


def fake(root, task, n, used, size=100):
    """A fake cache file ``<task>-<20 hex>.pt`` of ``size`` bytes, last used ``used`` (epoch seconds)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{task}-{n:020x}.pt"
    path.write_bytes(b"x" * size)
    os.utime(path, (used, used))
    return path


def names(root):
    return sorted(p.name for p in root.iterdir())


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """A private cache folder as $LEPTON_BENCH_CACHE, at the default cap."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LEPTON_BENCH_CACHE", str(root))
    monkeypatch.delenv(C.CAP_ENV, raising=False)
    return root


# ---------------------------------------------------------------- eviction

def test_least_recently_used_go_first_until_under_the_cap(tmp_path):
    now = time.time()
    old, mid, new = (fake(tmp_path, "imdb", i, now - (3 - i) * 100) for i in range(3))
    hit = fake(tmp_path, "cifar10", 9, now - 1000)            # written long ago ...
    os.utime(hit, (now - 10, hit.stat().st_mtime))            # ... but read since: used recently
    mine = fake(tmp_path, "conll2003", 10, now)               # just written
    other = [tmp_path / "notes.txt", tmp_path / "model.pt"]   # not cache files: never touched
    for p in other:
        p.write_bytes(b"y" * 1000)
        os.utime(p, (0, 0))
    assert [f.path for f in C.cache_files(tmp_path)] == [old, mid, new, hit, mine]

    gone = C.evict(tmp_path, cap=300, keep=[mine])
    assert [f.path for f in gone] == [old, mid]               # 500 bytes -> 300: the two least recently used
    assert sorted(p.name for p in (new, hit, mine, *other)) == names(tmp_path)
    assert C.evict(tmp_path, cap=300, keep=[mine]) == []      # under the cap: nothing more
    assert C.evict(tmp_path, cap=None) == []                  # no cap: never


def test_the_file_just_written_stays_even_alone_over_the_cap(tmp_path):
    now = time.time()
    others = [fake(tmp_path, "imdb", i, now - 100 + i) for i in range(3)]
    big = fake(tmp_path, "cifar10", 7, now - 1000, size=5000)   # oldest, and over the cap by itself
    gone = C.evict(tmp_path, cap=10, keep=[big])
    assert {f.path for f in gone} == set(others)
    assert names(tmp_path) == [big.name]


def test_touch_marks_a_file_used_and_keeps_when_it_was_written(tmp_path):
    path = fake(tmp_path, "imdb", 1, time.time() - 5 * DAY)
    written = path.stat().st_mtime
    C.touch(path)
    st = path.stat()
    assert st.st_mtime == written and time.time() - st.st_atime < 60
    assert time.time() - C.cache_files(tmp_path)[0].used < 60
    C.touch(tmp_path / "gone.pt")   # a file evicted meanwhile: no error


def test_files_vanishing_mid_eviction_are_counted_as_freed(tmp_path, monkeypatch):
    now = time.time()
    files = [fake(tmp_path, "imdb", i, now - 100 + i) for i in range(4)]
    listed = C.cache_files(tmp_path)
    files[0].unlink()   # another worker evicted it after we listed
    monkeypatch.setattr(C, "cache_files", lambda root=None: listed)
    gone = C.evict(tmp_path, cap=200)
    assert [f.path for f in gone] == [files[1]]   # its bytes and the vanished file's: 400 -> 200
    assert names(tmp_path) == [f.name for f in files[2:]]


def test_two_processes_evicting_at_once(tmp_path):
    now = time.time()
    files = [fake(tmp_path, "imdb", i, now - 1000 + i) for i in range(200)]
    start, errors = threading.Barrier(2), []

    def worker():
        start.wait()
        try:
            C.evict(tmp_path, cap=5000)
        except Exception as e:   # any error fails the test
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert names(tmp_path) == sorted(f.name for f in files[-50:])   # the 50 most recently used


# ---------------------------------------------------------------- the cap's variable

@pytest.mark.parametrize("value, cap", [
    (None, 5 * 10**9), ("", 5 * 10**9), ("2.5", 25 * 10**8), (" 1 ", 10**9), ("0.000001", 1000), ("1e-12", 1),
    ("3GB", 3 * 10**9),
    ("0", None), ("0.0", None), ("none", None), ("None", None),
])
def test_cap_from_the_environment(monkeypatch, value, cap):
    if value is None:
        monkeypatch.delenv(C.CAP_ENV, raising=False)
    else:
        monkeypatch.setenv(C.CAP_ENV, value)
    assert C.cache_cap() == cap


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf", "5 TB"])
def test_a_bad_cap_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(C.CAP_ENV, value)
    with pytest.raises(ConfigError, match=rf"^LEPTON_BENCH_CACHE_MAX_GB='{value}': expected a size in GB"):
        C.cache_cap()


# ---------------------------------------------------------------- load_task under a cap

def load(root, cache, **limits):
    spec = TASKS.get("imdb")
    return D.load_task(spec, spec.defaults, str(root), cache_dir=cache, **limits)


def test_load_task_evicts_the_least_recently_used_setting(data_dir, tmp_path, monkeypatch):
    cache = tmp_path / "c"
    monkeypatch.setenv(C.CAP_ENV, "1e-9")   # one byte: every new file evicts all the others
    load(data_dir, cache, limit_train=32)
    first = names(cache)
    load(data_dir, cache, limit_train=48)   # another --limit-train: another file, and the first goes
    second = names(cache)
    assert len(first) == len(second) == 1 and first != second

    monkeypatch.setenv(C.CAP_ENV, "none")
    a = load(data_dir, cache, limit_train=32).splits["train"].tensors["ids"]
    assert len(names(cache)) == 2
    path_a, path_b = (cache / n for n in (first[0], second[0]))
    now = time.time()
    os.utime(path_a, (now - 200, now - 200))
    os.utime(path_b, (now - 100, now - 100))
    real_load = torch.load

    def noatime_load(path, *a, **kw):   # a filesystem mounted noatime: reading leaves the access time
        st = os.stat(path)
        try:
            return real_load(path, *a, **kw)
        finally:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    with monkeypatch.context() as m:
        m.setattr(D.torch, "load", noatime_load)
        m.setattr(D, "read_source", lambda *a: pytest.fail("cache missed"))
        assert torch.equal(load(data_dir, cache, limit_train=32).splits["train"].tensors["ids"], a)   # a hit

    cap = path_a.stat().st_size + path_b.stat().st_size   # room for two: a third evicts one
    monkeypatch.setenv(C.CAP_ENV, f"{cap / 1e9!r}")
    load(data_dir, cache, limit_train=24)
    assert path_a.exists() and not path_b.exists()   # the hit marked A used: B was the least recently used


def test_a_file_evicted_between_lookup_and_load_is_rebuilt(data_dir, tmp_path, monkeypatch):
    cache = tmp_path / "c"
    before = load(data_dir, cache, limit_train=32).splits["test"].tensors["ids"]
    real_load, reads = torch.load, []

    def evicted_first(path, *a, **kw):   # another worker evicts it just as this one opens it
        os.unlink(path)
        return real_load(path, *a, **kw)

    real_read = D.read_source
    monkeypatch.setattr(D.torch, "load", evicted_first)
    monkeypatch.setattr(D, "read_source", lambda *a: reads.append(1) or real_read(*a))
    after = load(data_dir, cache, limit_train=32).splits["test"].tensors["ids"]
    assert reads == [1] and torch.equal(before, after) and len(names(cache)) == 1


# ---------------------------------------------------------------- the cache command

def one_error_line(capsys, text):
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_cache_dir(cache_env, tmp_path, capsys):
    assert main(["cache", "dir"]) == 0
    assert capsys.readouterr().out == f"{cache_env}\n"
    assert main(["cache", "dir", "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'elsewhere'}\n"


def test_cache_list(cache_env, capsys, monkeypatch):
    assert main(["cache", "list"]) == 0
    assert capsys.readouterr().out == f"0 files in {cache_env}: 0 B of a 5.00 GB cap (LEPTON_BENCH_CACHE_MAX_GB)\n"

    now = time.time()
    recent = fake(cache_env, "imdb", 1, now - 60, size=2_000_000)
    old = fake(cache_env, "cifar10", 2, now - 3 * DAY, size=500)
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out if line.startswith("|")]
    assert rows[0] == ["file", "task", "size", "last used"]
    assert rows[2][:3] == [old.name, "cifar10", "500 B"] and rows[3][:3] == [recent.name, "imdb", "2.0 MB"]
    assert rows[2][3] == time.strftime("%Y-%m-%d %H:%M", time.localtime(now - 3 * DAY))
    assert out[-1] == (f"2 files in {cache_env}: 2.0 MB of a 5.00 GB cap (LEPTON_BENCH_CACHE_MAX_GB); "
                       "least recently used first")

    monkeypatch.setenv(C.CAP_ENV, "0.001")
    assert main(["cache", "list"]) == 0
    assert "2.0 MB of a 1.0 MB cap" in capsys.readouterr().out.splitlines()[-1]
    monkeypatch.setenv(C.CAP_ENV, "none")
    assert main(["cache", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("2.0 MB, no cap (LEPTON_BENCH_CACHE_MAX_GB)")
    monkeypatch.setenv(C.CAP_ENV, "plenty")
    assert main(["cache", "list"]) == 2
    one_error_line(capsys, "lepton-bench: error: LEPTON_BENCH_CACHE_MAX_GB='plenty': expected a size in GB")


def test_cache_clear_by_task_age_and_all(cache_env, capsys):
    now = time.time()
    imdb_old = fake(cache_env, "imdb", 1, now - 10 * DAY)
    imdb_new = fake(cache_env, "imdb", 2, now - 60)
    cifar_old = fake(cache_env, "cifar10", 3, now - 10 * DAY, size=2000)
    gone_plugin = fake(cache_env, "gone_plugin_task", 4, now - 60)   # a task no longer registered
    (cache_env / "notes.txt").write_text("mine")

    assert main(["cache", "clear", "--task", "imdb", "--older-than", "2"]) == 0
    assert capsys.readouterr().out == f"freed 100 B: 1 cache file (imdb 1) from {cache_env}; 3 kept (2.2 kB)\n"
    assert not imdb_old.exists() and imdb_new.exists()

    assert main(["cache", "clear", "--older-than", "0.5"]) == 0
    assert "freed 2.0 kB: 1 cache file (cifar10 1)" in capsys.readouterr().out
    assert not cifar_old.exists()

    assert main(["cache", "clear", "--task", "cifar10"]) == 0
    assert capsys.readouterr().out == f"nothing to clear in {cache_env}: no cache file matches; 2 kept (200 B)\n"

    assert main(["cache", "clear", "--task", "gone_plugin_task"]) == 0
    assert "(gone_plugin_task 1)" in capsys.readouterr().out and not gone_plugin.exists()

    fake(cache_env, "cifar10", 5, now)
    assert main(["cache", "clear"]) == 0   # no filter: every cache file, no question asked
    assert capsys.readouterr().out == f"freed 200 B: 2 cache files (cifar10 1, imdb 1) from {cache_env}\n"
    assert names(cache_env) == ["notes.txt"]   # not a cache file: left alone
    assert main(["cache", "clear"]) == 0
    assert "nothing to clear" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--task", "imbd"], "lepton-bench: error: unknown task 'imbd'; did you mean imdb?"),
    (["--older-than", "-1"], "lepton-bench: error: --older-than must be a number of days, 0 or more, got -1"),
    (["--older-than", "nan"], "--older-than must be a number of days"),
])
def test_cache_clear_bad_input_deletes_nothing(cache_env, capsys, args, message):
    kept = fake(cache_env, "imdb", 1, time.time() - 10 * DAY)
    assert main(["cache", "clear", *args]) == 2
    one_error_line(capsys, message)
    assert kept.exists()


def test_cache_help_says_clear_deletes_everything(capsys):
    with pytest.raises(SystemExit) as e:
        main(["cache", "clear", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "deletes EVERY cache file, without asking" in text and "--older-than DAYS" in text
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert "list or clear the tensor cache" in " ".join(capsys.readouterr().out.split())


def test_prepare_warns_when_the_cap_evicts_what_it_prepared(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(C.CAP_ENV, "1e-9")
    cache = tmp_path / "c"
    assert main(["prepare", "--tasks", "imdb", "conll2003", "--data-dir", str(data_dir),
                 "--cache-dir", str(cache)]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of the 2 files just prepared were evicted" in err and "LEPTON_BENCH_CACHE_MAX_GB" in err
    assert len(names(cache)) == 1


def test_run_refuses_a_bad_cap_before_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(C.CAP_ENV, "-3")
    assert main(["run", "--variant", "stl-imdb", "--out", str(tmp_path)]) == 2
    one_error_line(capsys, "LEPTON_BENCH_CACHE_MAX_GB='-3'")
    assert not (tmp_path / "runs.jsonl").exists()
