"""The standing baselines every multi-task method must beat (Xin et al. 2022; Kurin et al. 2022):
equal weights (EW), random loss weighting (RLW, Lin et al. 2022) and the static-weight front.

Comparisons are made within a *set*: the MTL groups of one design, architecture and main tasks (a Δm
over other main tasks means something else). In a set:

* the **static front** is the non-dominated set of its static-sweep points (weighting ``ew`` or
  ``static``) in per-task test-metric space (each main task's primary metric, mean over seeds); a
  method lies *beyond* it when it dominates a front point, *below* when a front point dominates it,
  and *on* it otherwise;
* the front's **hypervolume** is taken from a reference point 0.01 below the lowest mean of any group
  of the set (STL baseline included) on each task, and again with the method added: the ratio says how
  much of the metric space it adds;
* each method's per-seed Δm is compared with EW's, RLW's and the best static point's (by mean Δm) with
  Welch's t-test; every p-value of the section is Holm-corrected together (Holm 1979), and a difference
  is called significant when its corrected p is below the level.

Selection here reads test metrics of groups that were each selected on validation; with a sweep of
hyperparameters the grid's own selection (on validation) picks each group first.
"""

from __future__ import annotations

from typing import Any

from .analysis import STATIC_WEIGHTINGS, Analysis
from .format import fmt_pct, md_cell, md_table
from .groups import Group
from .stats import ALPHA, NAN, dominates, holm, hypervolume, mean_ci, nondominated, ok, welch_p

REF_MARGIN = 0.01   # the hypervolume's reference point sits this far below the lowest mean on each task


def static_sets(a: Analysis) -> dict[tuple[str, str, tuple[str, ...]], list[Group]]:
    """(design, architecture, main tasks) -> its MTL groups, for the sets that have a static point."""
    sets: dict[tuple[str, str, tuple[str, ...]], list[Group]] = {}
    for g in a.mtl:
        if g.main:
            key = (" · ".join(dict.fromkeys(g.designs[t] for t in g.main)), g.architecture, g.main)
            sets.setdefault(key, []).append(g)
    return {k: v for k, v in sorted(sets.items()) if any(g.weighting in STATIC_WEIGHTINGS for g in v)}


def _point(a: Analysis, g: Group, main: tuple[str, ...]) -> tuple[float, ...]:
    return tuple(mean_ci(g.values(t, a.primary[t]))[0] for t in main)


def _mean_dm(a: Analysis, g: Group) -> float:
    return mean_ci(a.dm_seeds.get(g.name, []))[0]


def standing_rows(a: Analysis) -> list[dict[str, Any]]:
    """One row per non-static MTL group of a set with a static point: its place against the static
    front, the hypervolume ratio, and Δm differences to EW, RLW and the best static point with
    Holm-corrected p-values (over every comparison of every set)."""
    rows = []
    for (design, arch, main), groups in static_sets(a).items():
        static = [g for g in groups if g.weighting in STATIC_WEIGHTINGS]
        points = {g.name: _point(a, g, main) for g in groups}
        static_pts = [points[g.name] for g in static if all(ok(x) for x in points[g.name])]
        front = [static_pts[i] for i in nondominated(static_pts)]
        lows = []   # per task: the lowest mean of any group of the set, its STL baseline included
        for i, t in enumerate(main):
            ref = a.ref(t, groups[0])
            vals = [p[i] for p in points.values()] + ([mean_ci(ref.values(t, a.primary[t]))[0]] if ref else [])
            lows.append(min((x for x in vals if ok(x)), default=NAN))
        origin = tuple(x - REF_MARGIN for x in lows) if all(ok(x) for x in lows) else ()
        hv_front = hypervolume(front, origin) if front and origin else NAN
        ew = max((g for g in static if g.weighting == "ew"), key=lambda g: _mean_dm(a, g), default=None)
        best_static = max(static, key=lambda g: (ok(_mean_dm(a, g)), _mean_dm(a, g)))
        rlw = max((g for g in groups if g.weighting == "rlw"), key=lambda g: _mean_dm(a, g), default=None)
        for g in groups:
            if g.weighting in STATIC_WEIGHTINGS:
                continue
            p = points[g.name]
            place = ("—" if not front or not all(ok(x) for x in p) else
                     "beyond" if any(dominates(p, f) for f in front) else
                     "below" if any(dominates(f, p) for f in front) else "on")
            row = {"name": g.name, "set": f"{'+'.join(main)} ({design}, {arch})", "place": place,
                   "hv_ratio": (hypervolume(front + [p], origin) / hv_front
                                if ok(hv_front) and hv_front > 0 and place != "—" else NAN),
                   "origin": origin, "dm": _mean_dm(a, g)}
            for label, base in (("ew", ew), ("rlw", None if g is rlw else rlw), ("static", best_static)):
                row[f"{label}_name"] = base.name if base is not None else ""
                row[f"{label}_diff"] = row["dm"] - _mean_dm(a, base) if base is not None else NAN
                row[f"{label}_p"] = (welch_p(a.dm_seeds.get(g.name, []), a.dm_seeds.get(base.name, []))
                                     if base is not None else NAN)
            rows.append(row)
    keys = [(i, k) for i, r in enumerate(rows) for k in ("ew_p", "rlw_p", "static_p")]
    for (i, k), adj in zip(keys, holm([rows[i][k] for i, k in keys]), strict=True):
        rows[i][k.replace("_p", "_holm")] = adj
    return rows


def _versus(row: dict[str, Any], label: str) -> str:
    """``+0.31 (p_Holm 0.412)``: the Δm difference to a baseline and its corrected p."""
    if not row[f"{label}_name"]:
        return "—"
    diff = fmt_pct(row[f"{label}_diff"]).rstrip("%")
    p = row[f"{label}_holm"]
    return f"{diff} (p {p:.3f}{', significant' if ok(p) and p < ALPHA else ''})" if ok(p) else diff


def _verdict(row: dict[str, Any]) -> str:
    """One sentence: where the method lies against the static front, and which standing baselines it is
    ahead of or behind in Δm, each marked where the Holm-corrected test says so."""
    ahead, behind = [], []
    for label, what in (("ew", "EW"), ("rlw", "RLW"), ("static", "the best static point")):
        if not row[f"{label}_name"] or not ok(row[f"{label}_diff"]):
            continue
        sig = ok(row[f"{label}_holm"]) and row[f"{label}_holm"] < ALPHA
        (ahead if row[f"{label}_diff"] > 0 else behind).append(what + (" (significant)" if sig else ""))
    place = {"beyond": "goes beyond the static front", "below": "lies below the static front",
             "on": "lies on the static front", "—": "cannot be placed against the static front"}[row["place"]]
    sides = ([f"ahead of {_and(ahead)}"] if ahead else []) + ([f"behind {_and(behind)}"] if behind else [])
    return f"{row['name']} {place}" + (f"; in Δm it is {' but '.join(sides)}" if sides else "") + "."


def _and(items: list[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def standing_section(a: Analysis) -> str:
    """The section's table and verdict sentences; empty when no set has both a static point and another
    weighting."""
    rows = standing_rows(a)
    if not rows:
        return ""
    head = ("Every method against the standing baselines of its design, architecture and main tasks: equal "
            "weights (EW), random loss weighting (RLW) and the static-weight front (the non-dominated static "
            "points in per-task primary-metric space, test means). Place: *beyond* the front (it dominates a "
            "front point), *on* it, or *below* it (a front point dominates it). HV ratio: the hypervolume of the "
            "front with the method added ÷ without it (1.00: it adds nothing), from a reference point "
            f"{REF_MARGIN} below the lowest mean of any variant of the set, STL included, on each task. Δm "
            "differences in percentage points, p: Welch's t-test on per-seed Δm, Holm-corrected over every "
            f"comparison in this table; significant below {ALPHA}.")
    headers = ["variant", "main tasks (design, architecture)", "static front", "HV ratio ↑", "Δm − EW",
               "Δm − RLW", "Δm − best static"]
    table = [[md_cell(r["name"]), md_cell(r["set"]), r["place"],
              f"{r['hv_ratio']:.3f}" if ok(r["hv_ratio"]) else "—",
              _versus(r, "ew"), _versus(r, "rlw"), _versus(r, "static")] for r in rows]
    origins = sorted({(r["set"], ", ".join(f"{x:.4f}" for x in r["origin"])) for r in rows if r["origin"]})
    refs = "Reference points: " + "; ".join(f"{s}: ({o})" for s, o in origins) + "."
    verdicts = "\n".join(f"- {_verdict(r)}" for r in rows)
    return "\n\n".join([head, md_table(headers, table, left=3), refs, verdicts])
