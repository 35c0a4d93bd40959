"""The analysis behind a report: groups, their STL baselines, per-task and overall statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .groups import Group, make_groups, stl_references
from .records import get
from .stats import NAN, delta_m, mean_ci, mean_rank, ok, ratio, relative_delta, welch_p
from .tuning import Family, families, kept

STATIC_WEIGHTINGS = ("ew", "static")   # the points of the static-weight sweep; any other weighting is adaptive


def task_order(ok: Sequence[dict]) -> list[str]:
    """Tasks in the order the widest runs list them (the config order), then any others."""
    order: list[str] = []
    for r in sorted(ok, key=lambda r: (-len(r["tasks"]), r["run_id"])):
        order += [t for t in r["tasks"] if t not in order]
    return order


def task_metrics(ok: Sequence[dict], task: str) -> tuple[str, list[str]]:
    """(primary metric, all test metrics with the primary first) of a task, as the records name them."""
    primary, names = None, []
    for r in ok:
        m = get(r, "metrics", task) or {}
        primary = primary or m.get("primary")
        names += [k for k in (m.get("test") or {}) if k not in names]
    primary = primary or (names[0] if names else "")
    return primary, [primary] + [k for k in names if k != primary]


@dataclass
class Analysis:
    """Everything the README and the plots show, computed once from the records."""

    grid: str
    records: list[dict]
    ok: list[dict]
    failed: list[dict]
    groups: list[Group]
    tasks: list[str]
    primary: dict[str, str]
    metrics: dict[str, list[str]]
    refs: dict[tuple[str, str], Group]          # (group name, task) -> its STL baseline
    per_task: dict[str, pd.DataFrame] = field(default_factory=dict)
    dm_seeds: dict[str, list[float]] = field(default_factory=dict)
    overall: pd.DataFrame | None = None
    tuning: list[Family] = field(default_factory=list)   # the sweeps' families, each with its chosen point
    contrast: dict[str, Analysis] = field(default_factory=dict)   # grid -> its analysis: answers set beside

    def ref(self, task: str, g: Group) -> Group | None:
        """The STL baseline ``g`` is compared with on ``task`` (same task, same design); an STL group's is itself."""
        return self.refs.get((g.name, task))

    def has_stl(self, task: str) -> bool:
        return any(g.stl and g.tasks == (task,) for g in self.groups)

    def stl_means(self, task: str, ref: Group) -> dict[str, float]:
        """metric -> mean over the STL seeds of a task's test metric."""
        return {k: mean_ci(ref.values(task, k))[0] for k in self.metrics[task]}

    @property
    def mtl(self) -> list[Group]:
        return [g for g in self.groups if not g.stl]

    @property
    def steps(self) -> list[int]:
        """The training budgets (``train.steps``) of the ok runs, sorted."""
        return sorted({get(r.get("config") or {}, "train", "steps") for r in self.ok} - {None})

    def differs_from(self, other: Analysis) -> str:
        """How another grid on the same tasks differs from this one, in a few words: its budget
        ("200 steps against 2,000") and/or its design ("another design")."""
        def designs(a: Analysis) -> set[str]:
            return {d for g in a.groups for d in g.designs.values()}

        how = []
        if other.steps != self.steps:
            how.append(f"{'/'.join(f'{n:,}' for n in other.steps)} steps against "
                       f"{'/'.join(f'{n:,}' for n in self.steps)}")
        if designs(other) != designs(self):
            how.append("another design")
        return ", ".join(how) or "another setting"

    @property
    def auxiliary(self) -> dict[str, tuple[str, ...]]:
        """group name -> its auxiliary tasks, for the groups that have any."""
        return {g.name: g.auxiliary for g in self.groups if g.auxiliary}


def analyse(grid: str, records: Sequence[dict]) -> Analysis:
    """Group the records and compute the per-task and overall statistics."""
    ok = [r for r in records if r.get("status") == "ok"]
    # an interrupted run (stopped with its grid) did not fail: it is run again on resume, and until then absent
    failed = [r for r in records if r.get("status") not in ("ok", "interrupted")]
    groups = make_groups(ok)
    fams = families(groups)
    groups = kept(groups, fams)   # of a sweep, each variant's point chosen on validation (tuned tables)
    tasks = task_order(ok)
    tm = {t: task_metrics(ok, t) for t in tasks}
    a = Analysis(grid, list(records), ok, failed, groups, tasks, {t: p for t, (p, _) in tm.items()},
                 {t: m for t, (_, m) in tm.items()}, stl_references(groups))
    a.tuning = fams
    a.per_task = {t: task_stats(a, t) for t in tasks}
    a.dm_seeds = {g.name: group_delta_m(a, g) for g in a.mtl}
    a.overall = overall_stats(a)
    return a


def task_stats(a: Analysis, task: str) -> pd.DataFrame:
    """One row per group that trained ``task``, rows of one design together, STL groups first:
    per-metric mean/std, n, primary CI, Δ vs the group's STL baseline and p; ``aux`` marks the rows
    where the task is one of the group's auxiliary tasks."""
    primary = a.primary[task]
    rows = []
    for g in (g for g in a.groups if task in g.tasks):
        ref = a.ref(task, g)
        ref_primary = ref.values(task, primary) if ref else np.array([])
        vals = g.values(task, primary)
        row: dict[str, Any] = {"name": g.name, "is_ref": g.stl, "stl": g.stl, "design": g.designs[task],
                               "aux": task in g.auxiliary, "n": len(vals), "baseline": ref.name if ref else ""}
        for k in a.metrics[task]:
            row[f"{k}:mean"], row[f"{k}:std"], row[f"{k}:ci"] = mean_ci(g.values(task, k))
        is_cmp = ref is not None and g is not ref
        row["delta"] = relative_delta(row[f"{primary}:mean"], mean_ci(ref_primary)[0]) if is_cmp else NAN
        row["p"] = welch_p(vals, ref_primary) if is_cmp else NAN
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    # the default design first, then the others; within one, its STL baselines first
    df["_default"] = ~df["design"].str.startswith("default stem")
    df = df.sort_values(["_default", "design", "is_ref", "name"], ascending=[True, True, False, True])
    return df.drop(columns="_default").reset_index(drop=True)


def group_delta_m(a: Analysis, g: Group) -> list[float]:
    """Δm of each seed of an MTL group over its main tasks (not its auxiliary ones) that have an STL
    baseline of its design."""
    stl = {t: a.stl_means(t, ref) for t in g.main if (ref := a.ref(t, g)) is not None}
    if not stl:
        return []
    per_seed = []
    for r in g.runs:
        mtl = {t: get(r, "metrics", t, "test") or {} for t in stl}
        per_seed.append(delta_m(mtl, stl))
    return [d for d in per_seed if math.isfinite(d)]


def stl_cost(a: Analysis, g: Group, key: str) -> float:
    """Sum over a group's tasks, auxiliary ones included (it trains and serves them all), of its STL
    baselines' mean cost; nan unless every task has one."""
    refs = [a.ref(t, g) for t in g.tasks]
    if not refs or any(r is None for r in refs):
        return NAN
    return float(sum(mean_ci(r.cost(key))[0] for r in refs))


def overall_stats(a: Analysis) -> pd.DataFrame:
    """One row per group (MTL by main-task set, most tasks first, then by Δm, best first; then STL), with
    cost and ratios to STL together."""
    rows = []
    for g in a.groups:
        row: dict[str, Any] = {"name": g.name, "stl": g.stl, "tasks": "+".join(g.tasks), "n": len(g.runs),
                               # Δm reads these: values of different main-task sets are not comparable
                               "main": "+".join(g.main), "n_main": len(g.main),
                               "weighting": g.weighting, "architecture": g.architecture,
                               # a point of the static-weight sweep: equal or static weights
                               "static": g.weighting in STATIC_WEIGHTINGS,
                               "design": " · ".join(g.designs[t] for t in g.tasks)}
        row["dm"], row["dm_std"], row["dm_ci"] = mean_ci(a.dm_seeds.get(g.name, []))
        for key in ("train_s", "flops", "rss_mb", "cuda_mb", "params", "infer_s", "samples_s"):
            row[key] = mean_ci(g.cost(key))[0]
        for key, out in (("train_s", "train_ratio"), ("params", "params_ratio"), ("infer_s", "infer_ratio")):
            row[out] = NAN if g.stl else ratio(row[key], stl_cost(a, g, key))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    ranks = mean_ranks(a)
    df["mean_rank"] = [ranks.get(n, NAN) for n in df["name"]]
    df["_dm"] = df["dm"].fillna(-np.inf)
    return df.sort_values(["stl", "n_main", "main", "_dm", "name"], ascending=[True, False, True, False, True]).drop(
        columns="_dm").reset_index(drop=True)


STL_ENTRY = "STL"   # the STL baselines' entry in a mean-rank comparison


def mean_ranks(a: Analysis) -> dict[str, float]:
    """Mean rank of each MTL group among the MTL groups of its design and main tasks and their STL
    baselines (entry ``STL``, keyed ``STL:<design>|<main>``): on each main task, every test metric's
    mean over seeds is ranked (1 best, ties share), the task's rank is the mean over its metrics, and
    the mean rank the mean over tasks — each task weighs the same, as in Δm."""
    out: dict[str, float] = {}
    sets: dict[tuple[str, tuple[str, ...]], list[Group]] = {}
    for g in a.mtl:
        if g.main:
            sets.setdefault((" · ".join(g.designs[t] for t in g.main), g.main), []).append(g)
    for (design, main), groups in sorted(sets.items()):
        per_task: dict[str, list[float]] = {}
        for t in main:
            scores = {g.name: {k: mean_ci(g.values(t, k))[0] for k in a.metrics[t]} for g in groups}
            ref = a.ref(t, groups[0])
            if ref is not None:
                scores[STL_ENTRY] = a.stl_means(t, ref)
            for name, r in mean_rank(scores).items():
                per_task.setdefault(name, []).append(r)
        for name, r in per_task.items():
            key = name if name != STL_ENTRY else f"{STL_ENTRY}:{design}|{'+'.join(main)}"
            out[key] = float(np.nanmean(r)) if any(ok(x) for x in r) else NAN
    return out


def curve(g: Group, task: str, metric: str) -> pd.Series:
    """Validation metric vs step, mean over the group's seeds (empty when no curve was logged)."""
    pts = [(p.get("step"), get(p, task, metric)) for r in g.runs for p in (get(r, "curves", "val") or [])]
    df = pd.DataFrame([(s, v) for s, v in pts if s is not None and v is not None], columns=["step", "value"])
    return df.groupby("step")["value"].mean().sort_index()


FLAT = 0.1   # points of the primary metric per 100 steps: below it, a curve has levelled off


def last_gain(g: Group, task: str, metric: str) -> float:
    """The validation metric's gain over the last evaluation interval, in points (x100) per 100 steps,
    mean curve over seeds; nan with fewer than two evaluations."""
    c = curve(g, task, metric)
    if len(c) < 2:
        return NAN
    return float((c.iloc[-1] - c.iloc[-2]) / (c.index[-1] - c.index[-2]) * 100 * 100)
