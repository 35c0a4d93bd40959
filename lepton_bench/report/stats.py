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
