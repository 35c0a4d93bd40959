"""The tensor cache's files (no torch): where they are, their size cap, least-recently-used eviction, listing,
clearing.

One file per task and data setting, ``<cache>/<task>-<key>.pt`` (``load_task`` writes it; ``cache_key``:
what the tensors depend on, limits included). Used is explicit: ``load_task`` sets a file's access time on
every hit (``touch``), so eviction does not depend on how the filesystem is mounted (noatime, relatime).
After each write, the least recently used files go until the cache is under the cap
(``LEPTON_BENCH_CACHE_MAX_GB``); the file just written always stays. Several processes may evict at once
(grid workers): a file already gone is skipped, and a reader whose file went rebuilds it.
"""
from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

CACHE_ENV = "LEPTON_BENCH_CACHE"
CAP_ENV = "LEPTON_BENCH_CACHE_MAX_GB"
DEFAULT_CAP_GB = 5.0
GB = 10**9
_FILE = re.compile(r"^(?P<task>.+)-[0-9a-f]{20}\.pt$")   # <task>-<cache_key>.pt: nothing else is ours


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "lepton_bench"))


def cache_cap(value: str | None = None) -> int | None:
    """The cap in bytes from ``value`` (default: ``$LEPTON_BENCH_CACHE_MAX_GB``, unset: 5 GB); None: no
    cap (``0`` or ``none``). Anything else raises ``ConfigError``."""
    raw = os.environ.get(CAP_ENV) if value is None else value
    text = (raw or "").strip().lower()
    if not text:
        return round(DEFAULT_CAP_GB * GB)
    if text == "none":
        return None
    try:
        gb = float(text.removesuffix("gb"))
    except ValueError:
        gb = math.nan
    if not math.isfinite(gb) or gb < 0:
        raise ConfigError(f"{CAP_ENV}={raw!r}: expected a size in GB, e.g. 5 or 0.5, or 0 / none for no cap")
    return None if gb == 0 else max(1, round(gb * GB))   # a tiny cap stays a cap


@dataclass(frozen=True)
class CacheFile:
    path: Path
    task: str
    size: int          # bytes
    used: float        # last use, seconds since the epoch: the later of its access and modification times


def cache_files(cache_dir: Path | None = None) -> list[CacheFile]:
    """The cache's ``<task>-<key>.pt`` files, least recently used first (files vanishing meanwhile: left out)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    files = []
    for name in names:
        m = _FILE.match(name)
        if not m:
            continue
        try:
            st = (root / name).stat()
        except FileNotFoundError:   # evicted or cleared by another process meanwhile
            continue
        files.append(CacheFile(root / name, m["task"], st.st_size, max(st.st_atime, st.st_mtime)))
    return sorted(files, key=lambda f: (f.used, f.path.name))


def touch(path: Path) -> None:
    """Mark ``path`` used now (its access time; its modification time stays when it was written).
    A file gone meanwhile or a read-only cache (shared storage) is no error: using it still works."""
    try:
        # nanoseconds: a float round trip would move the modification time by a few ns
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    except OSError:
        pass


def _unlink(path: Path) -> bool | None:
    """Delete ``path``: True; gone already (another process evicted it): None; not ours to delete (another
    user's file in a shared cache, a file open elsewhere on Windows): False."""
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError:
        return False
    return True


def evict(cache_dir: Path | None = None, cap: int | None = None, keep: Iterable[Path] = ()) -> list[CacheFile]:
    """Delete the least recently used cache files until the rest fit in ``cap`` bytes (None: no cap);
    never a file in ``keep``, even when it alone is over the cap. The files this call deleted."""
    if cap is None:
        return []
    files = cache_files(cache_dir)
    total = sum(f.size for f in files)
    kept = {Path(p).resolve() for p in keep}
    deleted = []
    for f in files:
        if total <= cap:
            break
        if f.path.resolve() in kept:
            continue
        done = _unlink(f.path)
        if done is not False:   # deleted here or by another process: its bytes are free either way
            total -= f.size
        if done:
            deleted.append(f)
    return deleted


def clear(cache_dir: Path | None = None, tasks: Iterable[str] | None = None,
          older_than_days: float | None = None, now: float | None = None) -> list[CacheFile]:
    """Delete the cache files of ``tasks`` (None: every task) last used more than ``older_than_days``
    days ago (None: whenever); with neither, all of them. The files deleted."""
    wanted = set(tasks) if tasks else None
    cutoff = None if older_than_days is None else (time.time() if now is None else now) - older_than_days * 86400
    return [f for f in cache_files(cache_dir)
            if (wanted is None or f.task in wanted) and (cutoff is None or f.used < cutoff) and _unlink(f.path)]


def human_size(n: float) -> str:
    """Bytes in decimal units, as the cap is given: 950 B, 12.3 MB, 1.20 GB."""
    for unit, scale in (("GB", GB), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GB" else f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"
