"""An output folder that a grid can trust: checked writable before any run, one grid in it at a time, and a
write that fails for lack of space ended cleanly (no temporary file left, one line naming the folder and
its free space). Imports nothing of the project but its errors."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .errors import LeptonError

FULL = (errno.ENOSPC, errno.EDQUOT)   # a write that failed for lack of space (or of quota)


class DiskFullError(LeptonError):
    """A write failed for lack of space: the grid stops, and resumes once there is room again."""


def free_space(folder: Path) -> str:
    """'12.0 MiB free of 1.0 GiB' for the file system of ``folder`` (or its first existing parent)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return "free space unknown"
    return f"{_size(st.f_bavail * st.f_frsize)} free of {_size(st.f_blocks * st.f_frsize)}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_full(folder: Path) -> DiskFullError:
    return DiskFullError(f"no space left on the device of {folder} ({free_space(folder)}): free some space and "
                         "run the same command again; the grid resumes, rebuilding runs.jsonl from records/")


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, fsynced, and a rename: a reader never sees
    half of it. On any failure the temporary file is removed, and a failure for lack of space becomes a
    ``DiskFullError`` naming the folder."""
    folder = Path(path).parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{Path(path).name}.", suffix=".tmp")
    except OSError as e:
        raise (disk_full(folder) if e.errno in FULL else e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno in FULL:
            raise disk_full(folder) from None
        raise


# ---------------------------------------------------------------- writable before any run

def _reason(e: OSError) -> str:
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied (user {os.getuid()})"
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return "a parent folder is missing or is not a folder"
    if e.errno in FULL:
        return "no space left on device"
    return e.strerror or type(e).__name__


def check_writable(folder: Path, flag: str = "--out") -> None:
    """Create ``folder`` if needed and write a probe file in it; one line naming the folder and why not
    (read-only, permission, a missing parent, a file in the way, no space) otherwise."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LeptonError(f"{flag}: cannot use {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LeptonError(f"{flag}: cannot create the folder {folder}: {_reason(e)}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LeptonError(f"{flag}: cannot write in the folder {folder}: {_reason(e)}") from None


# ---------------------------------------------------------------- one grid per folder

_HELD: dict[str, int] = {}   # lock path -> descriptor, of the locks this process holds


def held_lock_fds() -> tuple[int, ...]:
    """The descriptors of the grid locks this process holds: its local workers inherit them, so a worker left
    running by a killed grid still keeps a second grid out of the folder until its run ends."""
    return tuple(_HELD.values())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GridLock:
    """An exclusive ``flock`` on ``<folder>/.lock`` for as long as a grid runs there; the file names its holder
    (process, host, start, command) for the message a second start gets. The kernel drops the lock when its
    holders end (the grid and the workers that inherited it), so a lock never outlives them; a file naming a
    process that is gone is a stale lock, taken over with a note."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self.fd: int | None = None

    def holder(self) -> dict:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def _describe(self, info: dict) -> str:
        pid = info.get("pid")
        if not pid:
            return "another process"
        where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
        since = f", since {info['started']}" if info.get("started") else ""
        gone = "" if where or _alive(int(pid)) else (": that process has ended, but a worker it started still "
                                                     "holds the lock until its run ends")
        return f"process {pid}{where}{since}{gone}"

    def acquire(self, wait: bool = False, say: Callable[[str], None] = lambda msg: None,
                poll_s: float = 2.0) -> None:
        """Take the lock, or raise one line naming its holder (``wait``: wait for it, saying so once)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._describe(self.holder())
            if not wait:
                os.close(fd)
                raise LeptonError(f"{self.folder} is in use by another grid ({holder}); wait for it to end, or pass "
                                  "--wait to start when it does") from None
            say(f"waiting for {self.folder}: in use by another grid ({holder})")
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(poll_s)
        before = self.holder()
        mine = before.get("host") in (None, socket.gethostname())
        if before.get("pid") and int(before["pid"]) != os.getpid() and mine:
            say(f"took over the stale lock of {self.folder}, left by process {before['pid']} (no longer running)")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.set_inheritable(fd, True)
        self.fd = fd
        _HELD[str(self.path)] = fd

    def release(self) -> None:
        """Empty the file (no holder to name) and drop the lock."""
        if self.fd is None:
            return
        _HELD.pop(str(self.path), None)
        try:
            os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)   # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self) -> GridLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
