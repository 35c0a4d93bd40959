"""Tuned tables: of a variant's sweep points, the report keeps the one chosen on validation.

Runs made by a grid with search axes carry them (``config.sweep``: axes, and ``tune_seeds`` under the
budget-saving protocol). A *family* is the groups of one variant and task set whose configs differ in
those axes only: its sweep points. Of each family the report keeps the group that
``lepton_bench.grid.selection`` chooses — the best mean validation primary metric of the main tasks, over
the tuning seeds — and every table, the verdict and the STL matching read the kept groups only (tuned
against tuned). The sensitivity section shows every point with its validation and test score, so a
reader sees how much tuning moved each variant; test scores never choose.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..grid.selection import choose, point_of, point_scores, validation_score
from .groups import STATIC_KEY, Group, _label, _parts, design_of, fmt_value
from .records import get, is_number
from .stats import NAN, finite, ok


@dataclass
class Family:
    """The sweep points of one variant on one task set."""

    variant: str
    axes: tuple[str, ...]
    tune_seeds: int | None
    groups: list[Group]
    chosen: Group | None = None
    label: str = ""   # the variant, and what sets the family apart from its variant's others (static weights)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)   # group name -> val/test/n


def _axes(g: Group) -> tuple[tuple[str, ...], int | None]:
    sweep = (g.runs[0].get("config") or {}).get("sweep") or {}
    return tuple(sweep.get("axes") or ()), sweep.get("tune_seeds")


def test_score(record: dict) -> float:
    """The mean over a run's main tasks of its test primary metric (shown, never used to choose)."""
    aux = set(get(record, "config", "auxiliary") or ())
    vals = [get(record, "metrics", t, "test", get(record, "metrics", t, "primary") or "") for t in record["tasks"]
            if t not in aux]
    x = finite(vals)
    return float(x.mean()) if len(x) == len(vals) and len(x) else NAN


def families(groups: list[Group]) -> list[Family]:
    """The families of the groups made by a sweep (one per variant, task set and everything but the
    axes), each with its chosen group; groups outside any sweep belong to none."""
    # a variant's axes, from any of its runs: a point at the defaults may have been run before the
    # sweep (the same run id), so its records carry no axes of their own
    # (and a grid's extra axes may have come later than its own: a variant's axes are the union)
    swept: dict[tuple, tuple[tuple[str, ...], int | None]] = {}
    for g in groups:
        axes, tune = _axes(g)
        if axes:
            old, old_tune = swept.get((g.variant, g.tasks), ((), None))
            swept[(g.variant, g.tasks)] = (tuple(dict.fromkeys([*old, *axes])), old_tune if old else tune)
    out: dict[tuple, Family] = {}
    for g in groups:
        axes, tune = swept.get((g.variant, g.tasks), ((), None))
        if not axes:
            continue
        rest = tuple(sorted((k, v) for k, v in g.config.items() if k not in axes))
        key = (g.variant, g.tasks, axes, rest)
        out.setdefault(key, Family(g.variant, axes, tune, [], label=_family_label(g, axes))).groups.append(g)
    for fam in out.values():
        runs = [r for g in fam.groups for r in g.runs]
        scores = point_scores(runs, list(fam.axes), fam.tune_seeds)
        order = [sweep_point(g, fam.axes) for g in sorted(fam.groups, key=lambda g: g.name)]
        best = choose(scores, order)
        fam.chosen = next((g for g in fam.groups if sweep_point(g, fam.axes) == best), None)
        for g in fam.groups:
            tuning = [r for r in g.runs if fam.tune_seeds is None or r["seed"] < fam.tune_seeds]
            val, test = finite(validation_score(r) for r in tuning), finite(test_score(r) for r in tuning)
            fam.scores[g.name] = {"val": float(val.mean()) if len(val) else NAN,
                                  "test": float(test.mean()) if len(test) else NAN, "n": len(tuning),
                                  "n_all": len(g.runs)}
    return sorted(out.values(), key=lambda f: (f.variant, f.groups[0].tasks, f.label))


def incomplete(f: Family) -> bool:
    """Whether a family's tuning is unfinished: a point short of the tuning seeds (every seed without the
    budget-saving protocol: as many as its best-covered point), or fewer points than the product of the
    values its runs show on each axis. Its chosen point may still change."""
    need = f.tune_seeds or max(s["n"] for s in f.scores.values())
    values = [{sweep_point(g, f.axes)[i][1] for g in f.groups} for i in range(len(f.axes))]
    product = 1
    for v in values:
        product *= len(v)
    return len(f.groups) < product or any(s["n"] < need for s in f.scores.values())


def axis_values(fams: list[Family]) -> dict[str, set]:
    """Every value each axis was tried at, over all families (not only the points a family has so far)."""
    values: dict[str, set] = {}
    for f in fams:
        for g in f.groups:
            for k, v in sweep_point(g, f.axes):
                values.setdefault(k, set()).add(v)
    return values


def at_edge(fams: list[Family]) -> dict[tuple[str, Any, str], list[str]]:
    """The chosen points at an end of a numeric axis of at least 3 values: (axis, value, 'largest' or
    'smallest') -> the families' labels. Their best may lie beyond the range swept (with 2 values every
    choice is an end, which says nothing)."""
    values = axis_values(fams)
    out: dict[tuple[str, Any, str], list[str]] = {}
    for f in fams:
        if f.chosen is None:
            continue
        for k, v in sweep_point(f.chosen, f.axes):
            vals = values[k]
            if len(vals) < 3 or not all(map(is_number, vals)):
                continue
            side = "largest" if v == max(vals) else "smallest" if v == min(vals) else ""
            if side:
                out.setdefault((k, v, side), []).append(f.label or f.variant)
    return out


def edge_gain(f: Family, axis: str, values: set) -> tuple[float, float] | None:
    """For a family chosen at an end of ``axis``: (its mean validation score there minus at the next value in,
    with every other axis as chosen; the larger seed std of the two points' validation scores over the tuning
    seeds). A gain within that std means the curve has levelled off at the end: the range holds its optimum
    as closely as the seeds can tell. None where the neighbour was not run (or a score is missing)."""
    if f.chosen is None:
        return None
    point = dict(sweep_point(f.chosen, f.axes))
    ordered = sorted(values)
    at = ordered.index(point[axis])
    inner = ordered[at - 1] if at == len(ordered) - 1 else ordered[at + 1]
    near = next((g for g in f.groups if dict(sweep_point(g, f.axes)) == {**point, axis: inner}), None)
    if near is None:
        return None
    spreads = []
    for g in (f.chosen, near):
        vals = finite(validation_score(r) for r in g.runs if f.tune_seeds is None or r["seed"] < f.tune_seeds)
        if len(vals) < 2:
            return None
        spreads.append(float(vals.std(ddof=1)))
    gain = f.scores[f.chosen.name]["val"] - f.scores[near.name]["val"]
    return (gain, max(spreads)) if ok(gain) else None


def _family_label(g: Group, axes: tuple[str, ...]) -> str:
    """The variant's name, with its static weights when a static front set them (its sweep points apart)."""
    keys = [k for k in g.config if k.startswith(STATIC_KEY) and k not in axes and g.config[k] != g.defaults.get(k)]
    return _label(g.variant, _parts(g, keys, False))


def sweep_point(g: Group, axes: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """The group's values of the sweep axes: ((key, value), ...) in axis order."""
    return point_of(g.runs[0].get("config") or {}, list(axes))


def kept(groups: list[Group], fams: list[Family]) -> list[Group]:
    """The groups the tables show: each family's chosen point, and every group outside a sweep. A chosen
    point's design leaves out the model settings its sweep tuned (a dropout chosen on validation is part of
    the tuning, not of the encoder): tuned STL and tuned MTL are matched whatever each chose."""
    dropped = {id(g) for f in fams for g in f.groups if g is not f.chosen}
    for f in fams:
        tuned = [k.split(".", 1)[1] for k in f.axes if k.startswith("model.")]
        if f.chosen is not None and tuned:
            cfg = copy.deepcopy(f.chosen.runs[0].get("config") or {})
            for k in tuned:
                (cfg.get("model") or {}).pop(k, None)
            f.chosen.designs = {t: design_of(cfg, t) for t in f.chosen.tasks}
    return [g for g in groups if id(g) not in dropped]


def point_label(g: Group, axes: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in sweep_point(g, axes))


def sensitivity_rows(fams: list[Family]) -> list[list[str]]:
    rows = []
    for f in fams:
        for g in sorted(f.groups, key=lambda g: point_label(g, f.axes)):
            s = f.scores[g.name]
            rows.append([f.label or f.variant, point_label(g, f.axes), f"{s['n']}" + (f" (+{s['n_all'] - s['n']})"
                                                                           if s["n_all"] > s["n"] else ""),
                         f"{s['val']:.4f}" if ok(s["val"]) else "—", f"{s['test']:.4f}" if ok(s["test"]) else "—",
                         ("✓ so far" if incomplete(f) else "✓") if g is f.chosen else ""])
    return rows
