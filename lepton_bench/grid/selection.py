"""Choosing a sweep point on validation only: shared by the grid (the budget-saving protocol picks
the point the remaining seeds run at) and the report (the tuned tables show each variant's point).

A grid's search axes (``Grid.sweep``, ``--sweep KEY=v1,v2``) give every variant, STL included, the
same points; a run's point is its config's values at the axes' keys. A variant's point is the one
with the best mean, over its seeds, of the mean validation primary metric of its main tasks (the
metrics of the checkpoint its run selected on validation) — test metrics are never read. Under the
budget-saving protocol (``tune_seeds`` k) only seeds 0..k-1 count, the seeds every point has.

No torch here: the report imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NAN = float("nan")


def dotted(config: Mapping[str, Any], key: str) -> Any:
    """``config["train"]["lr"]`` for ``"train.lr"``; None where a level is missing."""
    d: Any = config
    for part in key.split("."):
        if not isinstance(d, Mapping) or part not in d:
            return None
        d = d[part]
    return d


def point_of(config: Mapping[str, Any], axes: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """A run's sweep point: ((key, value), ...) in the axes' order; lists as tuples (hashable)."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in ((k, dotted(config, k)) for k in axes))


def validation_score(record: Mapping[str, Any]) -> float:
    """The mean over a run's main tasks (not its auxiliary ones) of its validation primary metric;
    nan when one is missing or not finite (a failed or diverged run)."""
    aux = set((record.get("config") or {}).get("auxiliary") or ())
    values = []
    for task in record.get("tasks") or []:
        if task in aux:
            continue
        m = ((record.get("metrics") or {}).get(task)) or {}
        v = (m.get("val") or {}).get(m.get("primary"))
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return NAN
        values.append(float(v))
    return sum(values) / len(values) if values else NAN


def point_scores(records: Iterable[Mapping[str, Any]], axes: Sequence[str],
                 tune_seeds: int | None = None) -> dict[tuple, float]:
    """Sweep point -> mean validation score over its ok runs (seeds below ``tune_seeds`` when given)."""
    by_point: dict[tuple, list[float]] = {}
    for r in records:
        if r.get("status") != "ok" or (tune_seeds is not None and r.get("seed", 0) >= tune_seeds):
            continue
        by_point.setdefault(point_of(r.get("config") or {}, axes), []).append(validation_score(r))
    return {p: (sum(v) / len(v) if v and all(math.isfinite(x) for x in v) else NAN) for p, v in by_point.items()}


def choose(scores: Mapping[tuple, float], order: Sequence[tuple] = ()) -> tuple | None:
    """The point with the best score (ties: the first in ``order``, then in ``scores``); None when no
    point has a finite score."""
    ranked = list(dict.fromkeys([*order, *scores]))
    best = [p for p in ranked if p in scores and math.isfinite(scores[p])]
    return max(best, key=lambda p: scores[p]) if best else None
