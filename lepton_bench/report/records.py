"""Reading a grid's records: where they are, one per run, and safe access to their parts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LeptonError
from ..results import read_records, runs_path
from .stats import NAN


def locate(results: Path) -> tuple[str, Path]:
    """(grid name, runs.jsonl path) of a results folder or of its runs.jsonl."""
    results = Path(results)
    if not results.exists():
        raise LeptonError(f"no results at {results}: give a results folder (results/<grid>) or its runs.jsonl")
    path = runs_path(results) if results.is_dir() else results
    if not path.is_file():
        raise LeptonError(f"{results} holds no runs.jsonl: run a grid into it first")
    return path.resolve().parent.name, path


def load_records(path: Path) -> list[dict]:
    """The records of ``path``, one per run_id (a later record, e.g. a retried run, wins), by run_id."""
    records = read_records(path)
    if not records:
        raise LeptonError(f"{path} holds no records: nothing to report")
    latest = {r["run_id"]: r for r in records}
    return [latest[k] for k in sorted(latest)]


def get(d: Any, *keys: str) -> Any:
    """d[k1][k2]..., or None where a level is missing (failed and older records lack parts)."""
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def is_number(x: Any) -> bool:
    """An int or a float, not a bool (JSON's true/false load as bools, which are ints to Python)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def num(x: Any) -> float:
    return float(x) if is_number(x) else NAN


def run_cost(rec: dict) -> dict[str, float]:
    """The cost figures of one run that the tables and plots use (nan where not recorded)."""
    c, tasks = rec.get("cost") or {}, rec.get("tasks") or []
    per_task = [get(c, "tasks", t) or {} for t in tasks]
    infer = [num(p.get("infer_seconds")) for p in per_task]
    # one input group's shared batch is one batch: its samples count once, not once per task of it
    samples = list({p.get("group") or t: num(p.get("samples_per_s")) for t, p in zip(tasks, per_task, strict=True)}
                   .values())
    return {"train_s": num(c.get("train_seconds")), "flops": num(c.get("flops_per_step")),
            "rss_mb": num(get(c, "memory", "peak_rss_mb")),
            "cuda_mb": num(get(c, "memory", "cuda_max_allocated_mb")),
            "params": num(get(c, "params", "total")),
            "infer_s": float(sum(infer)) if infer else NAN, "samples_s": float(sum(samples)) if samples else NAN}
