"""The report's PNG plots, drawn on the Agg canvas without pyplot (no global state, no GUI backend).

Δm vs training cost with the Pareto front, the per-task primary metric, validation curves, and
throughput and memory. No version string or hash salt varies between runs: the same records give
the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .analysis import STATIC_WEIGHTINGS, Analysis, curve
from .budget import budget_tasks, curves, pct
from .canvas import figure as _figure
from .canvas import save as _save
from .format import short_names
from .groups import fmt_value
from .records import is_number
from .stats import ok, pareto_front
from .tuning import sweep_point
from .why import plot_why, plot_why_curves

STL_COLOR, MTL_COLOR = "tab:orange", "tab:blue"
PLOT_FILES = ("delta_m_vs_cost.png", "per_task.png", "learning_curves.png", "cost.png", "sensitivity.png",
              "static_front.png", "why_heatmaps.png", "why_curves.png", "budget_curve.png")


def _label_room(names: Sequence[str]) -> float:
    """Extra figure width (inches) for bar labels longer than the usual variant name, so a long group
    label (``hard-ew (train.lr=0.001)``) does not squeeze its panel's bars."""
    return 0.05 * max(0, max((len(n) for n in names), default=0) - 24)


NAMED_POINTS = 8   # up to this many points are named beside them; more get numbers and a key


def plot_delta_m(a: Analysis, path: Path) -> bool:
    """Δm (95% CI bars) vs training-time ratio, with the Pareto front joined; False when nothing to draw."""
    df = a.overall[~a.overall["stl"] & a.overall["dm"].notna() & a.overall["train_ratio"].notna()]
    if df.empty:
        return False
    df = df.sort_values(["dm", "name"], ascending=[False, True]).reset_index(drop=True)
    few = len(df) <= NAMED_POINTS
    key, prefix = short_names(list(df["name"]))
    lines = [f"{i + 1:>2}  {name}  ({dm:+.2f})" for i, (name, dm) in enumerate(zip(key, df["dm"], strict=True))]
    side = 0.0 if few else 0.063 * max(len(ln) for ln in lines) + 0.3   # inches of the key (7.5 pt monospace)
    fig = _figure(8 + side, 5.5 if few else max(5.5, 0.16 * len(df) + 1.2))
    grid = fig.add_gridspec(1, 1 if few else 2, width_ratios=None if few else [8, side])
    ax = fig.add_subplot(grid[0, 0])
    ax.errorbar(df["train_ratio"], df["dm"], yerr=df["dm_ci"].fillna(0), fmt="o", color=MTL_COLOR,
                ecolor="0.6", capsize=3, label="MTL variant (95% CI)")
    pts = list(zip(df["train_ratio"], df["dm"], strict=True))
    sets = list(dict.fromkeys(df["main"])) if "main" in df else [None]
    for k, main in enumerate(sets):   # Δm over other main tasks is another scale: one front per set
        idx = [i for i, m in enumerate(df["main"] if main is not None else [None] * len(pts)) if m == main]
        front = [idx[i] for i in pareto_front([pts[i] for i in idx])]
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="tab:green", lw=1.2,
                label=("Pareto front" + (" (per set of main tasks)" if len(sets) > 1 else "")) if k == 0 else None)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(1, color="0.5", lw=0.8, ls=":")
    ax.plot([1], [0], "s", color=STL_COLOR, label="STL models together")
    if few:   # a handful of points: their names fit beside them
        _labels(ax, key, pts)
    else:     # many: a number beside each point, the names in a key (best Δm first), so no label covers another
        _labels(ax, [str(i + 1) for i in range(len(df))], pts)
        names = fig.add_subplot(grid[0, 1])
        names.axis("off")
        names.text(0, 1, (f"{prefix}…  (Δm %)\n" if prefix else "(Δm %)\n") + "\n".join(lines), va="top",
                   ha="left", fontsize=7.5, family="monospace", transform=names.transAxes)
    ax.set(xlabel="training time ÷ STL models' total (×, lower is cheaper)",
           ylabel="Δm vs STL (%, higher is better)", title=f"{a.grid}: quality gain vs training cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)
    return True


def _labels(ax, names: Sequence[str], pts: Sequence[tuple[float, float]]) -> None:
    """Name each point; a label that would touch an earlier one (by its drawn extent, with a margin) moves
    down a line at a time, joined to its point."""
    fig = ax.figure
    fig.canvas.draw()   # the limits are final: data -> pixel positions are known
    renderer = fig.canvas.get_renderer()
    placed = []   # the drawn extents of the labels placed so far
    order = sorted(range(len(names)), key=lambda i: (-pts[i][1], pts[i][0], names[i]))
    for i in order:
        dy = 4.0
        for _ in range(60):
            label = ax.annotate(names[i], pts[i], xytext=(5, dy), textcoords="offset pixels", fontsize=8)
            box = label.get_window_extent(renderer).expanded(1.15, 1.2)
            if not any(box.overlaps(b) for b in placed):
                break
            label.remove()
            dy -= box.height / 1.2
        if dy != 4.0:   # moved: drawn again with a line to its point
            label.remove()
            label = ax.annotate(names[i], pts[i], xytext=(5, dy), textcoords="offset pixels", fontsize=8,
                                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6})
        placed.append(box)


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
        if ok(m):  # right of the error bar, where it hides nothing
            ax.annotate(format(m, fmt), (m + e, yi), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize=7)
    ax.grid(axis="x", alpha=0.3)


def plot_per_task(a: Analysis, path: Path) -> bool:
    """One subplot per task: primary test metric per variant (std bars), the STL bar in its own colour."""
    tasks = [t for t in a.tasks if a.per_task[t][f"{a.primary[t]}:mean"].notna().any()]
    if not tasks:
        return False
    rows = max(len(a.per_task[t]) for t in tasks)
    room = sum(_label_room(list(a.per_task[t]["name"])) for t in tasks)
    fig = _figure(4.8 * len(tasks) + room, max(3.0, 0.3 * rows + 1.4))
    for ax, t in zip(fig.subplots(1, len(tasks), squeeze=False)[0], tasks, strict=True):
        df, k = a.per_task[t], a.primary[t]
        means, stds = df[f"{k}:mean"].to_numpy(), df[f"{k}:std"].to_numpy()
        names = [n + (" (aux)" if x else "") for n, x in zip(df["name"], df["aux"], strict=True)]
        _barh(ax, names, means, stds, [STL_COLOR if s else MTL_COLOR for s in df["is_ref"]], ".4f")
        lo, hi = np.nanmin(means - np.nan_to_num(stds)), np.nanmax(means + np.nan_to_num(stds))
        # Bars of close values all look full length from 0: start the axis just below the lowest.
        ax.set_xlim(max(0.0, lo - 0.15 * (hi - lo) - 0.02), min(1.0, hi + 0.25 * (hi - lo) + 0.02))
        ax.set(xlabel=f"test {k} (higher is better)", title=t)
    fig.suptitle(f"{a.grid}: primary test metric per variant (orange: STL baselines, each above the "
                 f"variants of its design; error bars: ± std over seeds)")
    _save(fig, path)
    return True


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
    """Two subplots per variant: training inputs/s (summed over input groups: a sentence that carries
    NER, POS and chunk labels counts once) and peak memory."""
    df = a.overall
    if df.empty or (df["samples_s"].isna().all() and df["rss_mb"].isna().all()):
        return False
    fig = _figure(11 + 2 * _label_room(list(df["name"])), max(3.0, 0.3 * len(df) + 1.4))
    colors = [STL_COLOR if s else MTL_COLOR for s in df["stl"]]
    ax1, ax2 = fig.subplots(1, 2)
    _barh(ax1, list(df["name"]), df["samples_s"].to_numpy(), None, colors, ",.0f")
    ax1.set(xlabel="training inputs/s, summed over input groups\n(an input serves every task of its group; "
                   "higher is better)", title="training throughput")
    # On a GPU the device memory is what limits a run; on CPU only RSS is recorded.
    cuda = bool(df["cuda_mb"].notna().any())
    _barh(ax2, list(df["name"]), df["cuda_mb" if cuda else "rss_mb"].to_numpy(), None, colors, ",.0f")
    ax2.set(xlabel=f"peak {'CUDA allocated' if cuda else 'RSS'} (MiB, lower is better)", title="peak memory")
    fig.suptitle(f"{a.grid}: cost per variant (orange: STL; means over seeds)")
    _save(fig, path)
    return True


def plot_sensitivity(a: Analysis, path: Path) -> bool:
    """The sensitivity plot (``sensitivity_figure``); False when no variant has two sweep points."""
    fig = sensitivity_figure(a)
    if fig is None:
        return False
    _save(fig, path)
    return True


def sensitivity_figure(a: Analysis) -> Figure | None:
    """One panel per tuned variant: its score at every sweep point along its first axis (log scale for a
    numeric axis spanning 4× or more), one line per value of its other axes; solid the validation score
    (what chooses), dashed the test score, the chosen point ringed."""
    fams = [f for f in a.tuning if len(f.groups) > 1]
    if not fams:
        return None
    cols = min(6, len(fams))
    rows = -(-len(fams) // cols)
    fig = _figure(2.9 * cols, 2.5 * rows + 0.6)
    axs = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, f in zip(axs, fams, strict=False):
        points = {g.name: sweep_point(g, f.axes) for g in f.groups}
        first = sorted({pt[0][1] for pt in points.values()}, key=_sort_key)
        numeric = all(map(is_number, first))
        xpos = {v: (v if numeric else i) for i, v in enumerate(first)}
        rest = sorted({pt[1:] for pt in points.values()}, key=lambda r: [_sort_key(v) for _, v in r])
        for k, r in enumerate(rest):
            gs = sorted((g for g in f.groups if points[g.name][1:] == r), key=lambda g: _sort_key(points[g.name][0][1]))
            xs = [xpos[points[g.name][0][1]] for g in gs]
            color = f"C{k % 10}"
            label = ", ".join(f"{key.split('.')[-1]}={fmt_value(v)}" for key, v in r) or "validation"
            ax.plot(xs, [f.scores[g.name]["val"] for g in gs], "-o", color=color, ms=3, label=label)
            ax.plot(xs, [f.scores[g.name]["test"] for g in gs], "--", color=color, lw=1)
            if f.chosen is not None and points[f.chosen.name][1:] == r:
                ax.plot([xpos[points[f.chosen.name][0][1]]], [f.scores[f.chosen.name]["val"]], "o", ms=9,
                        mfc="none", color="black")
        if numeric and min(first) > 0 and max(first) / min(first) >= 4:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks([xpos[v] for v in first], [fmt_value(v) for v in first], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(f.axes[0], fontsize=7)
        ax.set_title(f.label or f.variant, fontsize=8)
        ax.grid(alpha=0.3)
        if len(rest) > 1:
            ax.legend(fontsize=6, loc="best")
    for ax in axs[len(fams):]:
        ax.set_visible(False)
    fig.suptitle(f"{a.grid}: every sweep point, per variant (mean primary metric of the main tasks; solid: "
                 "validation, which chooses; dashed: test; ring: chosen)", fontsize=10)
    return fig


def _sort_key(v: Any) -> tuple:
    """Numbers in order, then anything else by its text (a sweep axis may hold strings or lists)."""
    return (0, v, "") if is_number(v) else (1, 0, str(v))


def plot_static_front(a: Analysis, path: Path) -> bool:
    """Per set of main tasks with a static sweep: every pair of tasks (T = 3: three panels), the static
    points (squares; filled: on the front in all T dimensions) with the pair's own front joined, each
    other method with 95% CI bars on both tasks, and the STL baselines (star)."""
    from itertools import combinations

    from .baselines import static_sets
    from .stats import mean_ci, nondominated

    panels = []
    sets = {k: v for k, v in static_sets(a).items()   # as the table: sets with a method to place
            if len(k[2]) > 1 and any(g.weighting not in STATIC_WEIGHTINGS for g in v)}
    for (design, arch, main), groups in sets.items():
        static = [g for g in groups if g.weighting in STATIC_WEIGHTINGS]
        mean = {g.name: [mean_ci(g.values(t, a.primary[t])) for t in main] for g in groups}
        full = [g for g in static if all(ok(m[0]) for m in mean[g.name])]
        on_front = {full[i].name for i in nondominated([[m[0] for m in mean[g.name]] for g in full])}
        for i, j in combinations(range(len(main)), 2):
            where = f"{design}, {arch}" if len({k[1:] for k in sets}) < len(sets) else arch
            panels.append((f"{'+'.join(main)} ({where})", main, i, j, groups, static, mean, on_front))
    if not panels:
        return False
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure(6.2 * cols, 4.8 * rows)
    axs = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (title, main, i, j, groups, static, mean, on_front) in zip(axs, panels, strict=False):
        ti, tj = main[i], main[j]
        sx = [(mean[g.name][i][0], mean[g.name][j][0], g.name) for g in static
              if ok(mean[g.name][i][0]) and ok(mean[g.name][j][0])]
        front2 = sorted((sx[k] for k in nondominated([(x, y) for x, y, _ in sx])), key=lambda p: p[0])
        ax.plot([p[0] for p in front2], [p[1] for p in front2], "-", color="tab:green", lw=1.2,
                label="static front (this pair)")
        for x, y, name in sx:
            ax.plot([x], [y], "s", ms=6, color="tab:green" if name in on_front else "none",
                    mec="tab:green", mew=1.2)
        others = [g for g in groups if g.weighting not in STATIC_WEIGHTINGS
                  and ok(mean[g.name][i][0]) and ok(mean[g.name][j][0])]
        pts, names = [], []
        for g in others:
            (x, _, ex), (y, _, ey) = mean[g.name][i], mean[g.name][j]
            ax.errorbar([x], [y], xerr=[ex if ok(ex) else 0], yerr=[ey if ok(ey) else 0], fmt="o", ms=5,
                        color=MTL_COLOR, ecolor="0.6", capsize=2)
            pts.append((x, y))
            names.append(g.name)
        ref_i, ref_j = a.ref(ti, groups[0]), a.ref(tj, groups[0])
        if ref_i is not None and ref_j is not None:
            stl = (mean_ci(ref_i.values(ti, a.primary[ti]))[0], mean_ci(ref_j.values(tj, a.primary[tj]))[0])
            if ok(stl[0]) and ok(stl[1]):
                ax.plot([stl[0]], [stl[1]], "*", ms=12, color=STL_COLOR, label="STL baselines")
        ax.set_xlim(right=ax.get_xlim()[1] + 0.45 * (ax.get_xlim()[1] - ax.get_xlim()[0]))   # room for names
        _labels(ax, names, pts)
        ax.set(xlabel=f"{ti} {a.primary[ti]} (test)", ylabel=f"{tj} {a.primary[tj]} (test)", title=title)
        ax.grid(alpha=0.3)
        ax.locator_params(nbins=5)   # fewer ticks: four-decimal labels would overlap
        ax.legend(fontsize=7, loc="lower left")
    for ax in axs[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{a.grid}: the static front, pair by pair (squares: static points, filled: on the front in "
                 "every task; dots: other methods, 95% CI; up and right is better)", fontsize=9)
    _save(fig, path)
    return True


def plot_budget(a: Analysis, path: Path) -> bool:
    """Per budgeted task: each variant's Δ vs STL at the same budget against the label share (log x), with
    its 95% CI band; a filled marker where the difference is significant. False without a budget."""
    panels = [(t, curves(a, t)) for t in budget_tasks(a)]
    panels = [(t, lines) for t, lines in panels if lines]
    if not panels:
        return False
    fig = _figure(6.2 * len(panels) + 2.8, 4.6)
    axs = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (task, lines) in zip(axs, panels, strict=True):
        shares = sorted({p.share for pts in lines.values() for p in pts})
        colors = [f"C{i}" for i in range(10)]
        for k, (label, pts) in enumerate(sorted(lines.items())):
            x = [p.share for p in pts]
            y = np.array([p.delta for p in pts], dtype=float)
            lo = np.array([p.low for p in pts], dtype=float)
            hi = np.array([p.high for p in pts], dtype=float)
            c = colors[k % len(colors)]
            ax.plot(x, y, "-", color=c, lw=1.5, label=label)
            ax.fill_between(x, np.where(np.isfinite(lo), lo, y), np.where(np.isfinite(hi), hi, y), color=c,
                            alpha=0.15, lw=0)
            for p in pts:
                ax.plot([p.share], [p.delta], "o", color=c, ms=6, mfc=c if p.significant else "white", mew=1.3)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(shares, [pct(s) for s in shares])
        ax.minorticks_off()
        ax.set(xlabel=f"share of {task}'s training labels (log scale; other tasks: every label)",
               ylabel=f"Δ {a.primary[task]} vs STL at the same budget (%)", title=f"{task}: Δ vs label budget")
        ax.grid(alpha=0.3)
    handles, labels = axs[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8,
               title="95% CI bands; filled: p < 0.05", title_fontsize=8)
    _save(fig, path)
    return True


def write_plots(a: Analysis, out: Path) -> list[str]:
    """Draw every plot that has data; remove a stale file of one that no longer has."""
    drawn = []
    draws = (plot_delta_m, plot_per_task, plot_learning_curves, plot_cost, plot_sensitivity, plot_static_front,
             plot_why, plot_why_curves, plot_budget)
    for name, draw in zip(PLOT_FILES, draws, strict=True):
        if a.groups and draw(a, out / name):
            drawn.append(name)
        else:
            (out / name).unlink(missing_ok=True)
    return drawn
