"""Reports: turn a grid's ``runs.jsonl`` into ``reports/<grid>/README.md`` with PNG plots.

The README holds, in order:

1. a summary in words, generated from the numbers: which multi-task (MTL) variants beat their
   matched single-task (STL) baselines on which tasks (and whether significantly), their Δm and
   training-cost ratio, and whether an adaptive weighting beats the best static-weight point;
2. the setting: runs, seeds, budget, limits, environment and date (the latest ``finished_at``);
3. per task, one row per variant: every test metric as mean ± std over seeds, n, the 95% CI of
   the primary metric and its relative Δ vs STL, marked ``*`` when Welch's t-test gives p < 0.05;
4. overall, one row per variant: Δm (Maninis et al. 2019) with its 95% CI over seeds, and cost
   (training time, FLOPs per step, peak memory, parameters, inference time) with ratios to the
   matched STL models together;
5. the failed runs, which every statistic leaves out;
6. plots: Δm vs training cost, per-task primary metric, validation curves, throughput and memory.

Every metric is higher-is-better and in [0, 1]. Δm is computed per seed of an MTL variant against
the STL means over seeds: the mean over tasks of the mean over that task's test metrics of
(M_mtl − M_stl) / M_stl × 100, so every task weighs the same whatever its number of metrics.

Nothing here imports torch: a report is fast and runs wherever the records are. The output is a
pure function of the records (no clock, sorted everything), so regenerating it changes no byte.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats
from tabulate import tabulate

from .config import ModelConfig
from .errors import LeptonError
from .results import read_records

ALPHA = 0.05          # significance level of the Welch tests; the CIs are 1 - ALPHA
DPI = 110
NAN = float("nan")
STL_COLOR, MTL_COLOR = "tab:orange", "tab:blue"
PLOT_FILES = ("delta_m_vs_cost.png", "per_task.png", "learning_curves.png", "cost.png")


# --------------------------------------------------------------------------- statistics


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _finite(values: Iterable[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (records write NaN as null)."""
    return np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float)


def mean_ci(values: Iterable[float], confidence: float = 1 - ALPHA) -> tuple[float, float, float]:
    """(mean, sample std, CI half-width) with Student's t; std and half-width are nan when n < 2."""
    x = _finite(values)
    if len(x) == 0:
        return NAN, NAN, NAN
    if len(x) < 2:
        return float(x.mean()), NAN, NAN
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * std / math.sqrt(len(x)))
    return float(x.mean()), std, half


def welch_p(a: Iterable[float], b: Iterable[float]) -> float:
    """p-value of Welch's t-test of a vs b; nan when a side has fewer than 2 values."""
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return NAN
    with warnings.catch_warnings():  # zero variance on both sides: scipy warns, returns nan
        warnings.simplefilter("ignore")
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def significant(p: float) -> bool:
    return math.isfinite(p) and p < ALPHA


def relative_delta(value: float, ref: float) -> float:
    """(value − ref) / ref × 100: the signed relative change in %, nan without a usable ref."""
    if value is None or ref is None or not math.isfinite(value) or not math.isfinite(ref) or ref == 0:
        return NAN
    return (value - ref) / ref * 100


def delta_m(mtl: Mapping[str, Mapping[str, float]], stl: Mapping[str, Mapping[str, float]]) -> float:
    """Δm in % of one MTL run: mean over tasks of the mean over metrics of the relative change.

    ``mtl`` and ``stl`` map task -> metric -> value (STL: the mean over its seeds). Tasks and
    metrics missing on either side are left out; nan when nothing is left to compare.
    """
    per_task = []
    for task in sorted(stl):
        got = mtl.get(task) or {}
        rel = _finite(relative_delta(got[k], ref) for k, ref in stl[task].items() if k in got)
        if len(rel):
            per_task.append(float(rel.mean()))
    return float(np.mean(per_task)) if per_task else NAN


def ratio(x: float, ref: float) -> float:
    """x / ref, nan without a usable (finite, non-zero) ref."""
    return x / ref if _ok(x) and _ok(ref) and ref != 0 else NAN


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, gain) points no other point beats (cost ≤, gain ≥, one strictly), by cost."""
    front = []
    for i, (c, g) in enumerate(points):
        dominated = any(c2 <= c and g2 >= g and (c2 < c or g2 > g) for j, (c2, g2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


# --------------------------------------------------------------------------- formatting


def fmt_num(x: float | None, digits: int = 4) -> str:
    return f"{x:,.{digits}f}" if _ok(x) else "—"


def fmt_pm(mean: float, spread: float, digits: int = 4, sign: bool = False) -> str:
    """``0.8662 ± 0.0031``; the mean alone when the spread is unknown (one seed)."""
    if not _ok(mean):
        return "—"
    m = f"{mean:{'+' if sign else ''}.{digits}f}"
    return f"{m} ± {spread:.{digits}f}" if _ok(spread) else m


def fmt_pct(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}%" if _ok(x) else "—"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×" if _ok(x) else "—"


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def bold(s: str) -> str:
    return f"**{s}**"


def md_cell(s: Any) -> str:
    """Text that cannot break a markdown table: no newlines, pipes escaped."""
    return " ".join(str(s).split()).replace("|", "\\|")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub table: the first ``left`` columns left-aligned, numbers right-aligned."""
    align = ["left"] * left + ["right"] * (len(headers) - left)
    return tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=True, colalign=align)


# --------------------------------------------------------------------------- loading


def locate(results: Path) -> tuple[str, Path]:
    """(grid name, runs.jsonl path) of a results folder or of its runs.jsonl."""
    results = Path(results)
    if not results.exists():
        raise LeptonError(f"no results at {results}: give a results folder (results/<grid>) or its runs.jsonl")
    path = results / "runs.jsonl" if results.is_dir() else results
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


def _get(d: Any, *keys: str) -> Any:
    """d[k1][k2]..., or None where a level is missing (failed and older records lack parts)."""
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else NAN


# --------------------------------------------------------------------------- analysis


@dataclass
class Group:
    """The ok runs of one variant on one task set: the unit of every table row."""

    name: str
    variant: str
    tasks: tuple[str, ...]
    architecture: str
    weighting: str
    runs: list[dict]
    designs: dict[str, str] = field(default_factory=dict)   # task -> design label (see ``design_of``)

    @property
    def stl(self) -> bool:
        return self.architecture == "single"

    def values(self, task: str, metric: str, split: str = "test") -> np.ndarray:
        """One value per seed of a task's metric (missing ones dropped)."""
        return _finite(_get(r, "metrics", task, split, metric) for r in self.runs)

    def cost(self, key: str) -> np.ndarray:
        return _finite(run_cost(r)[key] for r in self.runs)


def run_cost(rec: dict) -> dict[str, float]:
    """The cost figures of one run that the tables and plots use (nan where not recorded)."""
    c, tasks = rec.get("cost") or {}, rec.get("tasks") or []
    per_task = [_get(c, "tasks", t) or {} for t in tasks]
    infer = [_num(p.get("infer_seconds")) for p in per_task]
    samples = [_num(p.get("samples_per_s")) for p in per_task]
    return {"train_s": _num(c.get("train_seconds")), "flops": _num(c.get("flops_per_step")),
            "rss_mb": _num(_get(c, "memory", "peak_rss_mb")),
            "cuda_mb": _num(_get(c, "memory", "cuda_max_allocated_mb")),
            "params": _num(_get(c, "params", "total")),
            "infer_s": float(sum(infer)) if infer else NAN, "samples_s": float(sum(samples)) if samples else NAN}


def make_groups(ok: Sequence[dict]) -> list[Group]:
    """Group ok runs by (variant, tasks, design); a variant run on several task sets or designs (e.g.
    with ``--stem``) gets what tells them apart in its name."""
    by_key: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[dict]] = {}
    for r in ok:
        designs = tuple(design_of(r.get("config") or {}, t) for t in r["tasks"])
        by_key.setdefault((r["variant"], tuple(r["tasks"]), designs), []).append(r)
    task_sets = pd.Series([(v, t) for v, t, _ in by_key]).drop_duplicates().map(lambda k: k[0]).value_counts()
    design_sets = pd.Series([(v, d) for v, _, d in by_key]).drop_duplicates().map(lambda k: k[0]).value_counts()
    groups = []
    for (variant, tasks, designs), runs in sorted(by_key.items()):
        cfg = runs[0].get("config") or {}
        arch = cfg.get("architecture") or ("single" if variant.startswith("stl-") else "?")
        apart = (["+".join(tasks)] if task_sets[variant] > 1 else []) + \
            ([", ".join(f"{t}: {d}" for t, d in zip(tasks, designs, strict=True))] if design_sets[variant] > 1 else [])
        name = f"{variant} ({', '.join(apart)})" if apart else variant
        runs = sorted(runs, key=lambda r: (r["seed"], r["run_id"]))
        groups.append(Group(name, variant, tasks, arch, cfg.get("weighting") or "?", runs,
                            dict(zip(tasks, designs, strict=True))))
    return groups


# Model fields that only architectures other than 'single' read: an STL model is the same whatever they say.
SHARING_ONLY_FIELDS = ("soft_l2", "experts", "adapter_dim")


def design_of(cfg: Mapping[str, Any], task: str) -> str:
    """What a task is encoded and transformed with, e.g. ``cnn → mlp×1``: its stem and the trunk,
    plus any other model setting off its default. An MTL run is compared with the STL run of the
    same design on each task (same stems, same trunk), never with another encoder's."""
    model = {**asdict(ModelConfig()), **(cfg.get("model") or {})}
    stem = (model.pop("stems") or {}).get(task) or "default stem"
    trunk, depth = model.pop("trunk"), model.pop("depth")
    defaults = asdict(ModelConfig())
    other = [f"{k}={_short(v)}" for k, v in sorted(model.items())
             if k not in SHARING_ONLY_FIELDS and _short(v) != _short(defaults.get(k))]
    return f"{stem} → {trunk}×{depth}" + (f" ({', '.join(other)})" if other else "")


def _short(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def stl_references(groups: Sequence[Group]) -> dict[tuple[str, str], Group]:
    """(task, design) -> the STL baseline group of that design: the variant named ``...stl-<task>``
    if there is one, else the first single-task group."""
    refs: dict[tuple[str, str], Group] = {}
    for g in sorted(groups, key=lambda g: (not g.variant.endswith(f"stl-{g.tasks[0]}") if g.tasks else True,
                                           g.name)):
        if g.stl and len(g.tasks) == 1:
            refs.setdefault((g.tasks[0], g.designs[g.tasks[0]]), g)
    return refs


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
        m = _get(r, "metrics", task) or {}
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
    refs: dict[tuple[str, str], Group]
    per_task: dict[str, pd.DataFrame] = field(default_factory=dict)
    dm_seeds: dict[str, list[float]] = field(default_factory=dict)
    overall: pd.DataFrame | None = None

    def ref(self, task: str, g: Group) -> Group | None:
        """The STL baseline ``g`` is compared with on ``task``: same task, same design."""
        return self.refs.get((task, g.designs.get(task, "")))

    def has_stl(self, task: str) -> bool:
        return any(t == task for t, _ in self.refs)

    def stl_means(self, task: str, ref: Group) -> dict[str, float]:
        """metric -> mean over the STL seeds of a task's test metric."""
        return {k: mean_ci(ref.values(task, k))[0] for k in self.metrics[task]}

    @property
    def mtl(self) -> list[Group]:
        return [g for g in self.groups if not g.stl]


def analyse(grid: str, records: Sequence[dict]) -> Analysis:
    """Group the records and compute the per-task and overall statistics."""
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    groups = make_groups(ok)
    tasks = task_order(ok)
    tm = {t: task_metrics(ok, t) for t in tasks}
    a = Analysis(grid, list(records), ok, failed, groups, tasks, {t: p for t, (p, _) in tm.items()},
                 {t: m for t, (_, m) in tm.items()}, stl_references(groups))
    a.per_task = {t: task_stats(a, t) for t in tasks}
    a.dm_seeds = {g.name: group_delta_m(a, g) for g in a.mtl}
    a.overall = overall_stats(a)
    return a


def task_stats(a: Analysis, task: str) -> pd.DataFrame:
    """One row per variant that trained ``task``, rows of one design together, its STL baseline
    first: per-metric mean/std, n, primary CI, Δ vs that STL baseline and p."""
    primary = a.primary[task]
    rows = []
    for g in (g for g in a.groups if task in g.tasks):
        ref = a.ref(task, g)
        ref_primary = ref.values(task, primary) if ref else np.array([])
        vals = g.values(task, primary)
        row: dict[str, Any] = {"name": g.name, "is_ref": g is ref, "stl": g.stl, "design": g.designs[task],
                               "n": len(vals), "baseline": ref.name if ref else ""}
        for k in a.metrics[task]:
            row[f"{k}:mean"], row[f"{k}:std"], row[f"{k}:ci"] = mean_ci(g.values(task, k))
        is_cmp = ref is not None and g is not ref
        row["delta"] = relative_delta(row[f"{primary}:mean"], mean_ci(ref_primary)[0]) if is_cmp else NAN
        row["p"] = welch_p(vals, ref_primary) if is_cmp else NAN
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    # the default design first, then the others; within one, its baseline first
    df["_default"] = ~df["design"].str.startswith("default stem")
    df = df.sort_values(["_default", "design", "is_ref", "name"], ascending=[True, True, False, True])
    return df.drop(columns="_default").reset_index(drop=True)


def group_delta_m(a: Analysis, g: Group) -> list[float]:
    """Δm of each seed of an MTL group over its tasks that have an STL baseline of its design."""
    stl = {t: a.stl_means(t, ref) for t in g.tasks if (ref := a.ref(t, g)) is not None}
    if not stl:
        return []
    per_seed = []
    for r in g.runs:
        mtl = {t: _get(r, "metrics", t, "test") or {} for t in stl}
        per_seed.append(delta_m(mtl, stl))
    return [d for d in per_seed if math.isfinite(d)]


def stl_cost(a: Analysis, g: Group, key: str) -> float:
    """Sum over a group's tasks of its STL baselines' mean cost; nan unless every task has one."""
    refs = [a.ref(t, g) for t in g.tasks]
    if not refs or any(r is None for r in refs):
        return NAN
    return float(sum(mean_ci(r.cost(key))[0] for r in refs))


def overall_stats(a: Analysis) -> pd.DataFrame:
    """One row per group (MTL by Δm, best first; then STL), with cost and ratios to STL together."""
    rows = []
    for g in a.groups:
        row: dict[str, Any] = {"name": g.name, "stl": g.stl, "tasks": "+".join(g.tasks), "n": len(g.runs),
                               "weighting": g.weighting,
                               # a point of the static sweep: hard sharing with equal or static weights
                               "static": g.weighting == "static" or (g.weighting == "ew" and g.architecture == "hard"),
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
    df["_dm"] = df["dm"].fillna(-np.inf)
    return df.sort_values(["stl", "_dm", "name"], ascending=[True, False, True]).drop(columns="_dm").reset_index(
        drop=True)


# --------------------------------------------------------------------------- markdown


def summary(a: Analysis) -> str:
    """The opening paragraph: the findings in words, generated from the numbers."""
    parts = []
    no_stl = [t for t in a.tasks if not a.has_stl(t)]
    if not a.ok:
        parts.append("No run finished successfully: there is nothing to compare yet.")
    elif not a.mtl:
        parts.append(f"Only single-task (STL) runs so far ({plural(len(a.groups), 'variant')} on "
                     f"{', '.join(a.tasks)}): there is no multi-task variant to compare with them yet.")
    else:
        parts += _wins_sentences(a)
        parts += _adaptive_sentence(a)
    if no_stl:
        parts.append(f"There are no STL records for {', '.join(no_stl)}: Δ vs STL and Δm leave "
                     f"{'it' if len(no_stl) == 1 else 'them'} out.")
    if a.failed:
        parts.append(f"{plural(len(a.failed), 'run')} failed and "
                     f"{'are' if len(a.failed) > 1 else 'is'} left out of every statistic (see Failed runs).")
    return " ".join(parts)


def _wins(a: Analysis, name: str) -> list[str]:
    """'imdb (+1.20%, significant)' for each task where a group's primary mean beats STL."""
    out = []
    for t in a.tasks:
        df = a.per_task[t]
        row = df[df["name"] == name]
        if len(row) and _ok(row["delta"].iloc[0]) and row["delta"].iloc[0] > 0:
            sig = ", significant" if significant(row["p"].iloc[0]) else ""
            out.append(f"{t} ({fmt_pct(row['delta'].iloc[0])}{sig})")
    return out


def _wins_sentences(a: Analysis) -> list[str]:
    """Per MTL variant (best Δm first): where it beats STL, its Δm and training-cost ratio."""
    mtl = a.overall[~a.overall["stl"]]
    n_sig = sum(any("significant" in w for w in _wins(a, n)) for n in mtl["name"])
    if any(_ok(p) for df in a.per_task.values() for p in df["p"]):
        out = [f"{n_sig} of {plural(len(mtl), 'multi-task variant')} "
               f"beat{'s' if len(mtl) == 1 else ''} their matched STL baseline significantly on at least one task "
               f"(primary test metric, Welch's t-test, p < {ALPHA})."]
    else:
        out = ["No difference to STL can be tested for significance yet: that needs at least 2 seeds on both sides."]
    losers = []
    for _, row in mtl.iterrows():
        wins = _wins(a, row["name"])
        if not wins and not (_ok(row["dm"]) and row["dm"] > 0):
            cost = (f"{fmt_ratio(row['train_ratio'])} STL training time" if _ok(row["train_ratio"])
                    else "training time vs STL unknown")
            losers.append(f"{row['name']} (Δm {fmt_pct(row['dm'])}, {cost})")
            continue
        # "ahead", not "beats": a mean ahead is not a win unless marked significant
        where = f"is ahead of STL on {', '.join(wins)}" if wins else "is ahead of STL on no task's primary metric"
        cost = (f"at {fmt_ratio(row['train_ratio'])} the training time of the STL models together"
                if _ok(row["train_ratio"]) else "(its training time vs STL is unknown)")
        out.append(f"{row['name']} {where}; Δm {_fmt_dm(row)} {cost}.")
    if losers:
        out.append(f"{', '.join(losers)} {'is' if len(losers) == 1 else 'are'} ahead of STL on no task "
                   f"and {'has' if len(losers) == 1 else 'have'} no positive Δm.")
    return out


def _fmt_dm(row: Mapping[str, Any]) -> str:
    """``+0.80% (95% CI ± 0.30)``; the mean alone with one seed."""
    if not _ok(row["dm"]):
        return "— (no STL baseline)"
    return fmt_pct(row["dm"]) + (f" (95% CI ± {row['dm_ci']:.2f})" if _ok(row["dm_ci"]) else "")


def _adaptive_sentence(a: Analysis) -> list[str]:
    """Whether any adaptive weighting beats the best point of the static-weight sweep of its own
    design (same stems and trunk), by Δm."""
    mtl = a.overall[~a.overall["stl"] & a.overall["dm"].notna()]
    out = []
    for _, rows in mtl.groupby("design", sort=False):   # rows stay sorted by Δm, best first
        static = rows[rows["static"]]
        adaptive = rows[~rows["static"] & ~rows["weighting"].isin(["ew", "static"])]
        if static.empty or adaptive.empty:
            continue
        best = static.iloc[0]
        better = adaptive[adaptive["dm"] > best["dm"]]
        head = f"the best static-sweep point, {best['name']} (Δm {fmt_pct(best['dm'])})"
        if better.empty:
            top = adaptive.iloc[0]
            out.append(f"No adaptive weighting beats {head}; the best adaptive one is {top['name']} "
                       f"(Δm {fmt_pct(top['dm'])}).")
            continue
        items = []
        for _, r in better.iterrows():
            p = welch_p(a.dm_seeds[r["name"]], a.dm_seeds[best["name"]])
            items.append(f"{r['name']} (Δm {fmt_pct(r['dm'])}" + (f", Welch p = {p:.3f})" if _ok(p) else ")"))
        out.append(f"{len(better)} of {len(adaptive)} adaptive weightings beat {head}: {', '.join(items)}.")
    return out or ["No design has both a static-sweep point (hard sharing, equal or static weights) and an adaptive "
                   "weighting with a Δm, so adaptive and static weightings cannot be compared."]


def setting(a: Analysis, source: str) -> str:
    """The setting: runs, seeds, budget, limits, environment and date."""
    cfgs = [r.get("config") or {} for r in a.ok] or [r.get("config") or {} for r in a.records]
    steps = sorted({_get(c, "train", "steps") for c in cfgs} - {None})
    seeds = sorted({r["seed"] for r in a.records if r.get("seed") is not None})
    lines = [f"- Runs: {len(a.records)} in `{source}`, {len(a.ok)} ok, {len(a.failed)} failed; "
             f"{plural(len({r['variant'] for r in a.records}), 'variant')}; seeds {', '.join(map(str, seeds)) or '—'}",
             f"- Budget: {', '.join(map(str, steps)) or '—'} training steps"
             + (" (runs differ in budget: their comparisons are not matched)" if len(steps) > 1 else "")]
    for key in ("limit_train", "limit_eval"):
        vals = sorted({str(c.get(key)) for c in cfgs})
        lines.append(f"- `{key}`: {', '.join('none' if v == 'None' else v for v in vals)}")
    lines.append(_env_line(a))
    finished = sorted(r["finished_at"] for r in a.records if r.get("finished_at"))
    lines.append(f"- Date: {finished[-1] if finished else '—'} (the latest finished run)")
    return "\n".join(lines)


def _env_line(a: Analysis) -> str:
    """The environment of the first ok run (by run_id), and which fields other runs differ in."""
    if not a.ok:
        return "- Environment: —"
    first = a.ok[0]
    e = first.get("env") or {}
    keys = ("device", "device_name", "cpu", "cpu_count", "torch_threads", "python", "torch", "cuda", "timm",
            "lepton_bench", "git")
    differ = [k for k in keys if len({str((r.get("env") or {}).get(k)) for r in a.ok}) > 1]
    git = str(e.get("git") or "—")[:12]
    line = (f"- Environment (of `{first['run_id']}`): device {e.get('device', '—')} ({e.get('device_name', '—')}), "
            f"CPU {e.get('cpu', '—')} × {e.get('cpu_count', '—')}, {e.get('torch_threads', '—')} torch threads; "
            f"python {e.get('python', '—')}, torch {e.get('torch', '—')} (CUDA {e.get('cuda') or 'none'}), "
            f"timm {e.get('timm', '—')}, lepton_bench {e.get('lepton_bench', '—')}, git `{git}`")
    return line + (f"\n- Runs differ in environment: {', '.join(differ)}" if differ else "")


def task_section(a: Analysis, task: str) -> str:
    """The per-task table: metrics mean ± std, n, primary CI, Δ vs the STL baseline of the same design
    with its significance mark; a design column when the task was trained with several."""
    df, primary = a.per_task[task], a.primary[task]
    several = df["design"].nunique() > 1
    headers = ["variant"] + (["design"] if several else []) + ["n"] + [f"{k} ↑" for k in a.metrics[task]] + [
        f"95% CI ± ({primary})", "Δ vs STL"]
    best = {k: df[f"{k}:mean"].max() for k in a.metrics[task]}
    rows = []
    for _, r in df.iterrows():
        cells = [md_cell(r["name"] + (" (STL)" if r["is_ref"] else ""))] + ([md_cell(r["design"])] if several else [])
        cells.append(str(r["n"]))
        for k in a.metrics[task]:
            s = fmt_pm(r[f"{k}:mean"], r[f"{k}:std"])
            cells.append(bold(s) if _ok(r[f"{k}:mean"]) and r[f"{k}:mean"] >= best[k] - 1e-12 else s)
        ci = r[f"{primary}:ci"]
        cells.append(f"{ci:.4f}" if _ok(ci) else "")
        cells.append("" if r["is_ref"] else fmt_pct(r["delta"]) + ("*" if significant(r["p"]) else ""))
        rows.append(cells)
    missing = sorted(set(df.loc[df["baseline"] == "", "design"]))
    note = (f"\n\nNo STL records for design{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
            f"no Δ vs STL for {'their' if len(missing) > 1 else 'its'} rows.") if missing else ""
    return f"### {task} (primary: {primary})\n\n" + md_table(headers, rows) + note


def overall_section(a: Analysis) -> str:
    """The overall table: Δm with CI and cost, MTL rows first, then STL rows and the STL models together."""
    df = a.overall
    cuda = bool(df["cuda_mb"].notna().any())
    headers = ["variant", "tasks", "n", "Δm ↑ (%, ± 95% CI)", "train time ↓ (s)", "train ÷ STL ↓",
               "GFLOP/step ↓", "peak RSS ↓ (MiB)"] + (["CUDA alloc ↓ (MiB)"] if cuda else []) + [
               "params ↓ (M)", "params ÷ STL ↓", "inference ↓ (s)", "inference ÷ STL ↓"]
    best_dm = df.loc[~df["stl"], "dm"].max() if (~df["stl"]).any() else NAN
    rows = []
    for _, r in df.iterrows():
        dm = fmt_pm(r["dm"], r["dm_ci"], 2, sign=True)
        dm = "" if r["stl"] else bold(dm) if _ok(r["dm"]) and r["dm"] >= best_dm - 1e-12 else dm
        rows.append([md_cell(r["name"]), r["tasks"], str(r["n"]), dm, fmt_num(r["train_s"], 1),
                     fmt_ratio(r["train_ratio"]), fmt_num(r["flops"] / 1e9, 2), fmt_num(r["rss_mb"], 0)]
                    + ([fmt_num(r["cuda_mb"], 0)] if cuda else [])
                    + [fmt_num(r["params"] / 1e6, 2), fmt_ratio(r["params_ratio"]), fmt_num(r["infer_s"], 1),
                       fmt_ratio(r["infer_ratio"])])
    rows += _stl_together_row(a, cuda)
    return md_table(headers, rows, left=2)


def _stl_together_row(a: Analysis, cuda: bool) -> list[list[str]]:
    """Per design of the MTL groups, the sums over tasks of its STL baselines: what the ratios divide by."""
    rows, seen = [], set()
    for g in a.mtl:
        refs = [a.ref(t, g) for t in g.tasks]
        key = tuple(r.name for r in refs if r is not None)
        if None in refs or key in seen:   # the ratios need every task's baseline; so does this row
            continue
        seen.add(key)
        cost = {k: stl_cost(a, g, k) for k in ("train_s", "params", "infer_s", "flops")}
        rows.append([md_cell(f"STL models together: {', '.join(key)}"), "+".join(g.tasks), "", "",
                     fmt_num(cost["train_s"], 1), "1.00×", fmt_num(cost["flops"] / 1e9, 2), "—"]
                    + (["—"] if cuda else []) + [fmt_num(cost["params"] / 1e6, 2), "1.00×",
                                                 fmt_num(cost["infer_s"], 1), "1.00×"])
    return rows


def failed_section(a: Analysis) -> str:
    rows = [[md_cell(r["run_id"]), md_cell(r.get("error") or "—")[:300]] for r in a.failed]
    return ("These runs are left out of every statistic above.\n\n"
            + md_table(["run_id", "error"], rows, left=2))


# The Lepton articles' figures, which the design (lepton-* variants) is measured against.
@dataclass(frozen=True)
class Claim:
    task: str
    metric: str
    value: float
    setting: str


CLAIMS = (
    Claim("cifar10", "accuracy", 0.92, "CNN image encoder → shared layer (articles' budget not stated)"),
    Claim("imdb", "accuracy", 0.88, "recurrent text encoder → shared layer (articles' budget not stated)"),
    Claim("conll2003", "entity_f1", 0.973, "pretrained BERT, fine-tuned (AdamW, lr 2e-5, batch 16, 5 epochs)"),
)


def claims_section(a: Analysis) -> str:
    """The articles' figures beside what this grid measured, per design: its STL baseline and its best
    MTL variant on that task (by the claimed metric), mean ± std over seeds."""
    rows = []
    for c in CLAIMS:
        df = a.per_task.get(c.task)
        if df is None or df.empty or f"{c.metric}:mean" not in df:
            continue
        for design, part in df.groupby("design", sort=False):
            stl, mtl = part[part["stl"]], part[~part["stl"]]
            cells = [c.task, c.metric, md_cell(c.setting), md_cell(design), f"{c.value:.3f}"]
            for side in (stl, mtl):
                side = side.dropna(subset=[f"{c.metric}:mean"])   # e.g. only diverged runs
                if side.empty:
                    cells += ["—", "—"]
                    continue
                best = side.loc[side[f"{c.metric}:mean"].idxmax()]
                cells += [md_cell(best["name"]), fmt_pm(best[f"{c.metric}:mean"], best[f"{c.metric}:std"])]
            gap = max((v for v in part[f"{c.metric}:mean"] if _ok(v)), default=NAN) - c.value
            cells.append(f"{gap:+.3f}" if _ok(gap) else "—")
            rows.append(cells)
    if not rows:
        return ""
    steps = sorted({_get(r.get("config") or {}, "train", "steps") for r in a.ok} - {None})
    seeds = sorted({r["seed"] for r in a.ok})
    devices = sorted({f"{(r.get('env') or {}).get('device', '?')} ({(r.get('env') or {}).get('device_name') or '?'})"
                      for r in a.ok})
    head = (f"Measured here: {', '.join(map(str, steps))} training steps, {plural(len(seeds), 'seed')}, on "
            f"{'; '.join(devices)}, test split (`limit_eval` as in Setting). The articles' figures come from their "
            f"own, longer training; a design row exists for every stem → trunk this grid trained. The BERT figure "
            f"needs a pretrained `hf:` stem (README: Pretrained encoders), which only a machine with Hub access runs.")
    headers = ["task", "metric", "claimed with", "design here", "claimed", "best STL", "mean ± std",
               "best MTL", "mean ± std", "best here − claimed"]
    return head + "\n\n" + md_table(headers, rows, left=4)


OVERALL_NOTE = (
    "Δm (Maninis et al. 2019): per seed of a variant, the mean over its tasks of the mean over each task's "
    "test metrics of (M − M_STL) / M_STL × 100, with M_STL the mean over the STL seeds; positive is better than "
    "STL. Shown as mean ± 95% CI over seeds. Costs are means over seeds; a ratio divides by the sum over the "
    "variant's tasks of the STL baselines (training time, total parameters to serve every task, inference time "
    "over every task's test set), so below 1 is cheaper than one model per task.")

TASK_NOTE = (
    "Test metrics as mean ± sample std over seeds (n seeds; ↑ higher is better, the best mean in bold). "
    "95% CI: half-width of the primary metric's Student-t interval (blank with one seed). Δ vs STL: relative "
    f"change of the primary metric's mean vs the STL baseline, `*` when Welch's t-test gives p < {ALPHA} "
    "(needs 2 seeds on both sides). Each row is compared with the STL baseline of its own design (the task's "
    "stem → trunk × depth, and any other model setting off its default): the same encoders trained alone.")


def readme(a: Analysis, source: str, plots: Sequence[str]) -> str:
    """The whole README text."""
    out = [f"# lepton_bench report: {a.grid}", summary(a), "## Setting", setting(a, source)]
    if a.tasks:
        out += ["## Per task", TASK_NOTE] + [task_section(a, t) for t in a.tasks]
    if a.groups:
        out += ["## Overall", OVERALL_NOTE, overall_section(a)]
    claims = claims_section(a)
    if claims:
        out += ["## The articles' claims", claims]
    if a.failed:
        out += ["## Failed runs", failed_section(a)]
    if plots:
        out += ["## Plots"] + [f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in plots]
    return "\n\n".join(out) + "\n"


# --------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, without pyplot (no global state, no GUI backend)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    # No version string or hash salt varies between runs, so the same records give the same bytes.
    with rc_context({"svg.hashsalt": "lepton_bench"}):
        fig.savefig(path, dpi=DPI, metadata={"Software": None})


def plot_delta_m(a: Analysis, path: Path) -> bool:
    """Δm (95% CI bars) vs training-time ratio, with the Pareto front joined; False when nothing to draw."""
    df = a.overall[~a.overall["stl"] & a.overall["dm"].notna() & a.overall["train_ratio"].notna()]
    if df.empty:
        return False
    fig = _figure(8, 5.5)
    ax = fig.add_subplot()
    ax.errorbar(df["train_ratio"], df["dm"], yerr=df["dm_ci"].fillna(0), fmt="o", color=MTL_COLOR,
                ecolor="0.6", capsize=3, label="MTL variant (95% CI)")
    pts = list(zip(df["train_ratio"], df["dm"], strict=True))
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="tab:green", lw=1.2,
            label="Pareto front")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(1, color="0.5", lw=0.8, ls=":")
    ax.plot([1], [0], "s", color=STL_COLOR, label="STL models together")
    _labels(ax, list(df["name"]), pts)
    ax.set(xlabel="training time ÷ STL models' total (×, lower is cheaper)",
           ylabel="Δm vs STL (%, higher is better)", title=f"{a.grid}: quality gain vs training cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)
    return True


def _labels(ax, names: Sequence[str], pts: Sequence[tuple[float, float]]) -> None:
    """Name each point; a label that would cover an earlier one moves down a line, joined to its point."""
    fig = ax.figure
    fig.canvas.draw()   # the limits are final: data -> pixel positions are known
    line = 11.0         # px per label line at fontsize 8
    placed: list[tuple[float, float, float]] = []   # (x0, x1, y) of placed labels, in pixels
    order = sorted(range(len(names)), key=lambda i: (-pts[i][1], pts[i][0], names[i]))
    for i in order:
        x, y = ax.transData.transform(pts[i])
        x0, x1, ly = x + 5, x + 5 + 5.2 * len(names[i]), y + 4
        while any(x0 < b1 and b0 < x1 and abs(ly - by) < line for b0, b1, by in placed):
            ly -= line
        placed.append((x0, x1, ly))
        moved = ly != y + 4
        ax.annotate(names[i], pts[i], xytext=(5, ly - y), textcoords="offset pixels", fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if moved else None)


def _barh(ax, names: Sequence[str], means: Sequence[float], errs: Sequence[float] | None,
          colors: Sequence[str], fmt: str) -> None:
    """Horizontal bars, first name on top, each labelled with its value."""
    y = np.arange(len(names))[::-1]
    means = np.asarray(means, dtype=float)
    errs = np.zeros(len(names)) if errs is None else np.nan_to_num(np.asarray(errs, dtype=float))
    ax.barh(y, means, height=0.7, color=colors)
    shown = errs > 0  # no stub of a cap where the spread is unknown (one seed)
    if shown.any():
        ax.errorbar(means[shown], y[shown], xerr=errs[shown], fmt="none", ecolor="0.3", lw=0.8, capsize=2)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.margins(x=0.12)  # room for the value labels
    for yi, m, e in zip(y, means, errs, strict=True):
        if _ok(m):  # right of the error bar, where it hides nothing
            ax.annotate(format(m, fmt), (m + e, yi), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize=7)
    ax.grid(axis="x", alpha=0.3)


def plot_per_task(a: Analysis, path: Path) -> bool:
    """One subplot per task: primary test metric per variant (std bars), the STL bar in its own colour."""
    tasks = [t for t in a.tasks if a.per_task[t][f"{a.primary[t]}:mean"].notna().any()]
    if not tasks:
        return False
    rows = max(len(a.per_task[t]) for t in tasks)
    fig = _figure(4.8 * len(tasks), max(3.0, 0.3 * rows + 1.4))
    for ax, t in zip(fig.subplots(1, len(tasks), squeeze=False)[0], tasks, strict=True):
        df, k = a.per_task[t], a.primary[t]
        means, stds = df[f"{k}:mean"].to_numpy(), df[f"{k}:std"].to_numpy()
        _barh(ax, list(df["name"]), means, stds, [STL_COLOR if s else MTL_COLOR for s in df["is_ref"]], ".4f")
        lo, hi = np.nanmin(means - np.nan_to_num(stds)), np.nanmax(means + np.nan_to_num(stds))
        # Bars of close values all look full length from 0: start the axis just below the lowest.
        ax.set_xlim(max(0.0, lo - 0.15 * (hi - lo) - 0.02), min(1.0, hi + 0.25 * (hi - lo) + 0.02))
        ax.set(xlabel=f"test {k} (higher is better)", title=t)
    fig.suptitle(f"{a.grid}: primary test metric per variant (orange: STL baselines, each above the "
                 f"variants of its design; error bars: ± std over seeds)")
    _save(fig, path)
    return True


def curve(g: Group, task: str, metric: str) -> pd.Series:
    """Validation metric vs step, mean over the group's seeds (empty when no curve was logged)."""
    pts = [(p.get("step"), _get(p, task, metric)) for r in g.runs for p in (_get(r, "curves", "val") or [])]
    df = pd.DataFrame([(s, v) for s, v in pts if s is not None and v is not None], columns=["step", "value"])
    return df.groupby("step")["value"].mean().sort_index()


def plot_learning_curves(a: Analysis, path: Path) -> bool:
    """One subplot per task: validation primary metric vs step, one line per variant."""
    data = {t: [(g, curve(g, t, a.primary[t])) for g in a.groups if t in g.tasks] for t in a.tasks}
    data = {t: [(g, c) for g, c in gc if len(c)] for t, gc in data.items()}
    data = {t: gc for t, gc in data.items() if gc}
    if not data:
        return False
    styles = _styles(a)
    # STL baselines: thick black; with several per task (several designs), a dash pattern and a label each
    stl = [g for g in a.groups if g.stl]
    several = len({g.tasks for g in stl}) < len(stl)
    designs = sorted({g.designs[g.tasks[0]] for g in stl})
    for g in stl:
        dash = ("--", ":", "-.")[designs.index(g.designs[g.tasks[0]]) % 3]
        styles[g.name] = {"color": "black", "lw": 2.2, "ls": dash}
    stl_label = {g.name: f"STL baseline ({g.name})" if several else "STL baseline" for g in stl}
    fig = _figure(5.0 * len(data) + 2.5, 4.2)
    for ax, (t, gc) in zip(fig.subplots(1, len(data), squeeze=False)[0], data.items(), strict=True):
        for g, c in gc:
            ax.plot(c.index, c.to_numpy(), label=stl_label.get(g.name, g.name), **styles[g.name])
        ax.set(xlabel="training step", ylabel=f"validation {a.primary[t]} (higher is better)", title=t)
        ax.grid(alpha=0.3)
    handles = {lab: h for ax in fig.axes for h, lab in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7)
    fig.suptitle(f"{a.grid}: validation curves (mean over seeds)")
    _save(fig, path)
    return True


def _styles(a: Analysis) -> dict[str, dict[str, Any]]:
    """A line style per MTL group, by name order: 20 colours, then the next line style."""
    from matplotlib import colormaps

    cmap, dashes = colormaps["tab20"], ("-", "-.", ":", "--")
    return {g.name: {"color": cmap(i % 20), "ls": dashes[i // 20 % len(dashes)], "lw": 1.2}
            for i, g in enumerate(sorted(a.mtl, key=lambda g: g.name))}


def plot_cost(a: Analysis, path: Path) -> bool:
    """Two subplots per variant: training samples/s (summed over tasks) and peak memory."""
    df = a.overall
    if df.empty or (df["samples_s"].isna().all() and df["rss_mb"].isna().all()):
        return False
    fig = _figure(11, max(3.0, 0.3 * len(df) + 1.4))
    colors = [STL_COLOR if s else MTL_COLOR for s in df["stl"]]
    ax1, ax2 = fig.subplots(1, 2)
    _barh(ax1, list(df["name"]), df["samples_s"].to_numpy(), None, colors, ",.0f")
    ax1.set(xlabel="training samples/s, summed over tasks (higher is better)", title="training throughput")
    # On a GPU the device memory is what limits a run; on CPU only RSS is recorded.
    cuda = bool(df["cuda_mb"].notna().any())
    _barh(ax2, list(df["name"]), df["cuda_mb" if cuda else "rss_mb"].to_numpy(), None, colors, ",.0f")
    ax2.set(xlabel=f"peak {'CUDA allocated' if cuda else 'RSS'} (MiB, lower is better)", title="peak memory")
    fig.suptitle(f"{a.grid}: cost per variant (orange: STL; means over seeds)")
    _save(fig, path)
    return True


def write_plots(a: Analysis, out: Path) -> list[str]:
    """Draw every plot that has data; remove a stale file of one that no longer has."""
    drawn = []
    for name, draw in zip(PLOT_FILES, (plot_delta_m, plot_per_task, plot_learning_curves, plot_cost), strict=True):
        if a.groups and draw(a, out / name):
            drawn.append(name)
        else:
            (out / name).unlink(missing_ok=True)
    return drawn


# --------------------------------------------------------------------------- entry point


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees half a README."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be read
    os.replace(tmp, path)


def write_report(results: Path, out: Path | None = None) -> Path:
    """Write ``out/README.md`` (default ``reports/<grid>``) and its plots; returns the README's path."""
    grid, path = locate(Path(results))
    a = analyse(grid, load_records(path))
    out = Path(out) if out is not None else Path("reports") / grid
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(a, out)
    readme_path = out / "README.md"
    _write_atomic(readme_path, readme(a, f"{grid}/{path.name}", plots))
    return readme_path
