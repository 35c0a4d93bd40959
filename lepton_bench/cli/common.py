"""What the single-run and the grid commands share: the overrides and runtime fields from the flags, and the
--data-dir check. Below both commands, so neither imports the other for it."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LeptonError


def _overrides(args) -> list[str]:
    """--set values, then --stem TASK=NAME as ``model.stems.TASK=NAME`` (one task's stem; the
    variant's stems for the other tasks stay)."""
    from ..models.stems import STEMS
    from ..tasks import TASKS

    stems = []
    for item in args.stems:
        task, sep, name = item.partition("=")
        if not sep:
            raise LeptonError(f"bad --stem {item!r}: expected TASK=NAME, e.g. imdb=embedding")
        STEMS.get(name.strip().partition(":")[0])   # close matches on typos
        stems.append(f"model.stems.{TASKS.get(task.strip()).name}={json.dumps(name.strip())}")
    return list(args.overrides) + stems


def _runtime(args, log_dir: Path) -> dict:
    """The RunConfig fields that change how, not what, is trained; ``log_dir``: the trackers' default
    folder. A tracker named by --log is checked here, before anything runs (close matches on a typo,
    one line naming the extra to install)."""
    from ..run.trackers import check

    if args.log_dir and not args.log:
        raise LeptonError("--log-dir needs --log TRACKER")
    log = tuple(dict.fromkeys(args.log))
    check(log)
    return {"device": args.device, "data_dir": args.data_dir, "precision": args.precision,
            "compile": args.compile, "log": log, "log_dir": (args.log_dir or str(log_dir)) if log else None}


def _check_data_dir(data_dir: str | None, tasks) -> None:
    """A bad --data-dir fails now, naming what is missing, not later in every run."""
    if not data_dir:
        return
    if not Path(data_dir).is_dir():
        raise LeptonError(f"--data-dir {data_dir}: no such folder")
    from ..data import local_files
    from ..tasks import TASKS

    for task in dict.fromkeys(tasks):
        local_files(Path(data_dir), TASKS.get(task))
