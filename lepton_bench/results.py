"""The one results schema: a versioned JSON record per finished run, one per line.

Records are appended with a single ``write`` on an ``O_APPEND`` file under an
exclusive lock, then fsynced: concurrent writers never interleave, and a reader
skips a torn last line (a machine that died mid-write) instead of failing.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

# Keys every record has; tests check them, the report relies on them.
RECORD_KEYS = ("schema_version", "run_id", "status", "variant", "tasks", "seed", "config",
               "config_hash", "metrics", "curves", "cost", "env", "started_at", "finished_at")


def json_safe(x: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def append_record(path: str | os.PathLike, record: dict) -> None:
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    line = (json.dumps(json_safe(record), allow_nan=False) + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A torn line left by a killed writer would glue onto ours: start on a fresh line.
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike) -> list[dict]:
    """All complete records; torn or foreign lines are skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{n}: skipping a torn or invalid line", stacklevel=2)
            continue
        if isinstance(rec, dict) and rec.get("schema_version") == SCHEMA_VERSION:
            out.append(rec)
        else:
            warnings.warn(f"{path}:{n}: skipping a record of another schema", stacklevel=2)
    return out
