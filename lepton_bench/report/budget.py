"""The verdict as a curve: when a grid varies a task's label budget, each variant's Δ on that task against
its STL baseline *at the same budget*, along the budget, and the crossover in one sentence.

A budget is ``tasks.<task>.train_fraction`` (or ``train_count``, read as the share of the train split it
labels, from the record). The STL matching (``groups.stl_references``) already pairs a group only with an STL
group of the same budget on that task. A *line* is a variant (and whatever else of its config is not the
budget nor a tuned axis): the same design at every budget, each point its own tuned configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import LABEL_BUDGET_SIZE
from .analysis import Analysis
from .format import fmt_pm, md_table, plural
from .groups import Group
from .records import get
from .stats import ALPHA, NAN, diff_ci, mean_ci, ok, relative_delta, significant, welch_p


def label_share(g: Group, task: str) -> float:
    """The share of its train split whose labels ``task`` trained on in group ``g`` (1: every label)."""
    count = g.config.get(f"tasks.{task}.train_count") or 0
    if not count:
        fraction = g.config.get(f"tasks.{task}.train_fraction")
        return float(fraction) if fraction is not None else 1.0
    sizes = [get(r, "data", task, "sizes", "train") for r in g.runs]
    n = next((s for s in sizes if s), None)
    return count / n if n else NAN


def budget_tasks(a: Analysis) -> list[str]:
    """The main tasks whose label budget varies between the report's groups, in task order."""
    out = []
    for t in a.tasks:
        shares = {label_share(g, t) for g in a.groups if t in g.main}
        if len({s for s in shares if ok(s)}) > 1:
            out.append(t)
    return out


@dataclass
class Point:
    share: float     # the task's label share, in (0, 1]
    group: Group
    stl: Group
    delta: float     # Δ of the primary test metric vs the STL at this budget, % of the STL mean
    low: float       # its 95% CI (Welch's, of the difference of the means, relative to the STL mean)
    high: float
    p: float         # Welch's t-test, MTL seeds vs STL seeds
    n: int

    @property
    def significant(self) -> bool:
        return significant(self.p)


def _line_key(g: Group, task: str, axes: set[str]) -> tuple:
    budget = {f"tasks.{task}.{f}" for f in LABEL_BUDGET_SIZE}
    return (g.variant, g.tasks, tuple(sorted((k, v) for k, v in g.config.items()
                                             if k not in budget and k not in axes)))


def curves(a: Analysis, task: str) -> dict[str, list[Point]]:
    """Line label (the variant) -> its points along the budget, smallest share first: every MTL group
    that has ``task`` as a main task and an STL baseline of that task at its budget."""
    axes = {k for f in a.tuning for k in f.axes}
    primary = a.primary[task]
    lines: dict[tuple, list[Point]] = {}
    for g in a.mtl:
        stl = a.ref(task, g)
        if task not in g.main or stl is None:
            continue
        mine, ref = g.values(task, primary), stl.values(task, primary)
        base = mean_ci(ref)[0]
        diff, half = diff_ci(mine, ref)
        rel = relative_delta(mean_ci(mine)[0], base)
        scale = 100 / base if ok(base) and base else NAN
        lines.setdefault(_line_key(g, task, axes), []).append(
            Point(label_share(g, task), g, stl, rel, rel - half * scale, rel + half * scale,
                  welch_p(mine, ref), len(mine)))
    out: dict[str, list[Point]] = {}
    for key, points in sorted(lines.items(), key=lambda kv: kv[0][0]):
        label = key[0] if key[0] not in out else f"{key[0]} #{sum(k.startswith(key[0]) for k in out) + 1}"
        out[label] = sorted(points, key=lambda p: p.share)
    return out


def pct(share: float) -> str:
    """0.05 -> '5%', 0.025 -> '2.5%'."""
    return f"{share * 100:.3g}%"


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def crossover(task: str, label: str, points: list[Point]) -> str:
    """One sentence: up to which budget the variant helps ``task`` significantly, and where it hurts."""
    helps = [p for p in points if p.significant and p.delta > 0]
    hurts = [p for p in points if p.significant and p.delta < 0]
    above = [p for p in points if helps and p.share > max(h.share for h in helps)]
    best = max(points, key=lambda p: p.delta if ok(p.delta) else -np.inf)
    if helps and len(helps) == len(points) - len(above):   # every budget up to the largest that helps
        top = max(helps, key=lambda p: p.delta)
        text = (f"{label} helps {task} significantly up to {pct(max(h.share for h in helps))} of its labels "
                f"({top.delta:+.2f}% at {pct(top.share)})")
        text += f", not beyond ({_list([pct(p.share) for p in above])})" if above else ", at every budget tried"
    elif helps:
        top = max(helps, key=lambda p: p.delta)
        text = (f"{label} helps {task} significantly at {_list([pct(p.share) for p in helps])} of its labels "
                f"({top.delta:+.2f}% at {pct(top.share)}), not at "
                f"{_list([pct(p.share) for p in points if p not in helps])}")
    else:
        test = f"p {best.p:.2g}" if ok(best.p) else "too few seeds for a test yet"
        text = (f"{label} does not help {task} significantly at any budget (best {best.delta:+.2f}% at "
                f"{pct(best.share)}, {test})" if ok(best.delta) else
                f"{label} has no comparable point on {task} yet")
    if hurts:
        worst = min(hurts, key=lambda p: p.delta)
        text += (f"; it hurts significantly at {_list([pct(p.share) for p in hurts])} "
                 f"({worst.delta:+.2f}% at {pct(worst.share)})")
    return text + "."


def budget_section(a: Analysis) -> str:
    """The crossover sentences, then a table per budgeted task: the STL score and each variant's Δ at every
    budget (bold where significant); '' when no budget varies."""
    parts = []
    for task in budget_tasks(a):
        lines = curves(a, task)
        if not lines:
            continue
        shares = sorted({p.share for pts in lines.values() for p in pts})
        primary = a.primary[task]
        order = sorted(lines, key=lambda k: -max((p.delta for p in lines[k] if ok(p.delta)), default=-np.inf))
        parts.append(f"**{task} by its label budget** (the other tasks keep every label; Δ of its test "
                     f"{primary} vs STL at the same budget, Welch's test, p < {ALPHA}):")
        parts.append("\n".join(f"- {crossover(task, label, lines[label])}" for label in order))
        stl_row = ["STL (" + primary + ")"]
        stl_at = {p.share: p.stl for pts in lines.values() for p in pts}
        for s in shares:
            ref = stl_at.get(s)
            m, sd, _ = mean_ci(ref.values(task, primary)) if ref else (NAN, NAN, NAN)
            stl_row.append(fmt_pm(m, sd) + (f" (n={len(ref.runs)})" if ref else ""))
        rows = [stl_row]
        for label in order:
            at = {p.share: p for p in lines[label]}
            row = [label]
            for s in shares:
                p = at.get(s)
                if p is None or not ok(p.delta):
                    row.append("—")
                    continue
                cell = f"{p.delta:+.2f}% [{p.low:+.2f}, {p.high:+.2f}]" if ok(p.low) else f"{p.delta:+.2f}%"
                row.append(f"**{cell}**" if p.significant else cell)
            rows.append(row)
        header = ["", *(f"{pct(s)} of labels" for s in shares)]
        parts.append(md_table(header, rows))
        n_points = sum(len(v) for v in lines.values())
        parts.append(f"{plural(len(lines), 'variant')}, {plural(n_points, 'point')}; each point is its own tuned "
                     "configuration (the Tuning section), bold: significant, in brackets: the 95% CI of Δ.")
    return "\n\n".join(parts)


def headline(a: Analysis) -> str:
    """The budget's verdict for the report's first screen: the best line's crossover sentence ('' without
    a budget)."""
    out = []
    for task in budget_tasks(a):
        lines = curves(a, task)
        if lines:
            best = max(lines, key=lambda k: max((p.delta for p in lines[k] if ok(p.delta)), default=-np.inf))
            out.append(crossover(task, best, lines[best]))
    return " ".join(out)
