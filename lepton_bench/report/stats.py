"""The statistics of a report: means with Student-t CIs, Welch's t-test, Δm, ratios, the Pareto front.

Every metric is higher-is-better and in [0, 1]; records write NaN as null, so every function here
takes the finite numbers among what it is given and says nan where nothing usable is left.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05          # significance level of the Welch tests; the CIs are 1 - ALPHA
NAN = float("nan")


def ok(x: float | None) -> bool:
    """A usable number: not None, not nan or inf."""
    return x is not None and math.isfinite(x)


def finite(values: Iterable[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (records write NaN as null)."""
    return np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float)


def mean_ci(values: Iterable[float], confidence: float = 1 - ALPHA) -> tuple[float, float, float]:
    """(mean, sample std, CI half-width) with Student's t; std and half-width are nan when n < 2."""
    x = finite(values)
    if len(x) == 0:
        return NAN, NAN, NAN
    if len(x) < 2:
        return float(x.mean()), NAN, NAN
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * std / math.sqrt(len(x)))
    return float(x.mean()), std, half


def welch_p(a: Iterable[float], b: Iterable[float]) -> float:
    """p-value of Welch's t-test of a vs b; nan when a side has fewer than 2 values."""
    a, b = finite(a), finite(b)
    if len(a) < 2 or len(b) < 2:
        return NAN
    with warnings.catch_warnings():  # zero variance on both sides: scipy warns, returns nan
        warnings.simplefilter("ignore")
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def diff_ci(a: Iterable[float], b: Iterable[float], confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """(mean(a) − mean(b), half-width of its CI) by Welch: the standard error sqrt(s²a/na + s²b/nb) and
    the Welch–Satterthwaite degrees of freedom; the half-width is nan when a side has fewer than 2 values."""
    a, b = finite(a), finite(b)
    if not len(a) or not len(b):
        return NAN, NAN
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, NAN
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, 0.0
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, float(stats.t.ppf(0.5 + confidence / 2, dof) * se)


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
        rel = finite(relative_delta(got[k], ref) for k, ref in stl[task].items() if k in got)
        if len(rel):
            per_task.append(float(rel.mean()))
    return float(np.mean(per_task)) if per_task else NAN


def ratio(x: float, ref: float) -> float:
    """x / ref, nan without a usable (finite, non-zero) ref."""
    return x / ref if ok(x) and ok(ref) and ref != 0 else NAN


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, gain) points no other point beats (cost ≤, gain ≥, one strictly), by cost."""
    front = []
    for i, (c, g) in enumerate(points):
        dominated = any(c2 <= c and g2 >= g and (c2 < c or g2 > g) for j, (c2, g2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` Pareto-dominates ``b`` (every coordinate higher is better): ≥ everywhere, > somewhere."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def nondominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (higher is better on every axis), in input order;
    of identical points, each is kept."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """The volume dominated by ``points`` and bounded below by ``ref`` (higher is better on every axis):
    the measure of the union of the boxes [ref, p]. Exact, by slicing along the last axis (small sets:
    a front of a grid's variants). Points not above ``ref`` on every axis add nothing."""
    pts = [tuple(map(float, p)) for p in points if all(x > r for x, r in zip(p, ref, strict=True))]
    if not pts:
        return 0.0
    if len(ref) == 1:
        return max(p[0] for p in pts) - float(ref[0])
    levels = sorted({p[-1] for p in pts}, reverse=True) + [float(ref[-1])]
    volume = 0.0
    # the slab (lo, hi] of the last axis: the points that reach hi cover it
    for hi, lo in zip(levels[:-1], levels[1:], strict=True):
        volume += (hi - lo) * hypervolume([p[:-1] for p in pts if p[-1] >= hi], ref[:-1])
    return volume


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (Holm 1979), in input order: the i-th smallest of m is
    multiplied by m − i + 1 (i from 1), made non-decreasing, capped at 1; nan stays nan and does not
    count among the m comparisons. Reject where the adjusted value is below the level."""
    idx = sorted((i for i, p in enumerate(pvalues) if ok(p)), key=lambda i: pvalues[i])
    out, running, m = [NAN] * len(pvalues), 0.0, len(idx)
    for k, i in enumerate(idx):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        out[i] = running
    return out


def mean_rank(values: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean rank over criteria (the convention of the Nash-MTL and FAMO papers): ``values`` maps a
    candidate to criterion -> score (higher is better); on each criterion the candidates with a score
    are ranked 1 (best) up, ties sharing their mean rank; a candidate's mean rank is the mean over the
    criteria it has a score on (nan with none)."""
    ranks: dict[str, list[float]] = {c: [] for c in values}
    criteria = sorted({k for scores in values.values() for k in scores})
    for k in criteria:
        have = [c for c in values if ok(values[c].get(k))]
        for c, r in zip(have, stats.rankdata([-values[c][k] for c in have]), strict=True):
            ranks[c].append(float(r))
    return {c: float(np.mean(r)) if r else NAN for c, r in ranks.items()}
