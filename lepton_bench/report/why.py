"""Why a variant helps or hurts: the gradient conflict and task affinity its runs measured.

The records' ``curves["diagnostics"]`` (``lepton_bench/run/diagnostics.py``, every ``train.diagnose_every``
steps, on the shared parameters) are averaged per group over measured steps and seeds: mean cosine of
each pair's gradients, the share of measured steps where it was negative (conflict), and the mean TAG
affinity Z(i -> j) (Fifty et al. 2021: positive when a step on task i lowers task j's loss). From the
affinities, the grouping TAG would choose: the partition of the tasks that maximises the sum over tasks
of the mean affinity onto each task from the others of its group (a task alone scores 0; partitions
only, no budget of networks), set against what the grid measured (``tag_sentence``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis import Analysis
from .budget import label_share
from .canvas import figure as _figure
from .canvas import save as _save
from .format import FOLD_ROWS, collapsible, fmt_pct, short_names
from .groups import Group
from .stats import ALPHA, ok

# Below these, a measurement says the tasks barely interact, and the sentences say so instead of reading a
# sign: a mean cosine this close to 0 (a single step's sign flips around it), and an affinity onto a task
# under this share of its own step's effect on its loss.
NEAR_ZERO_COSINE = 0.05
WEAK_AFFINITY = 0.1


@dataclass
class Why:
    """One group's measurements, averaged over its measured steps and seeds (tasks in group order)."""

    group: Group
    tasks: list[str]
    cosine: np.ndarray      # T x T mean cosine (diagonal 1)
    conflict: np.ndarray    # T x T share of measured steps with a negative cosine
    affinity: np.ndarray    # T x T mean Z(i -> j): row i's step, column j's loss
    norm: np.ndarray        # T mean gradient norm
    steps: list[int]        # the measured steps (the curves' x)
    cosine_curve: np.ndarray     # steps x T x T, mean over seeds
    affinity_curve: np.ndarray   # steps x T x T, mean over seeds
    points: int             # measurements averaged (steps x seeds)
    every: int | None       # train.diagnose_every of its runs


def why_of(g: Group) -> Why | None:
    """``g``'s measurements, or None when its runs have none."""
    points = [p for r in g.runs for p in ((r.get("curves") or {}).get("diagnostics") or [])]
    tasks = [t for t in g.tasks if points and t in points[0]["grad_norm"]]
    if len(tasks) < 2:
        return None
    n = len(tasks)

    def matrix(p: dict, key: str, diagonal: float | None = None) -> np.ndarray:
        m = np.full((n, n), np.nan)
        for i, a in enumerate(tasks):
            for j, b in enumerate(tasks):
                v = diagonal if i == j and diagonal is not None else p[key].get(a, {}).get(b)
                m[i, j] = np.nan if v is None else v
        return m

    cos = np.stack([matrix(p, "cosine", 1.0) for p in points])
    aff = np.stack([matrix(p, "affinity") for p in points])
    steps = sorted({p["step"] for p in points})
    at = [np.array([p["step"] == s for p in points]) for s in steps]
    every = {(r.get("config") or {}).get("train", {}).get("diagnose_every") for r in g.runs} - {None}
    with np.errstate(invalid="ignore"):
        return Why(g, tasks, np.nanmean(cos, 0), np.nanmean(cos < 0, 0), np.nanmean(aff, 0),
                   np.array([np.nanmean([p["grad_norm"][t] for p in points]) for t in tasks]), steps,
                   np.stack([np.nanmean(cos[m], 0) for m in at]), np.stack([np.nanmean(aff[m], 0) for m in at]),
                   len(points), every.pop() if len(every) == 1 else None)


def measured(a: Analysis) -> list[Why]:
    """Every MTL group (at its chosen point) whose runs measured something."""
    return [w for w in (why_of(g) for g in a.mtl) if w is not None]


def partitions(items: Sequence[str]) -> Iterator[list[list[str]]]:
    """Every partition of ``items`` into non-empty groups (Bell(T) of them: 5 for 3 tasks)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in partitions(rest):
        for k in range(len(p)):
            yield [*p[:k], [first, *p[k]], *p[k + 1:]]
        yield [[first], *p]


def tag_score(tasks: list[str], affinity: np.ndarray, partition: list[list[str]]) -> float:
    """Sum over tasks of the mean affinity onto each from the other tasks of its group (alone: 0)."""
    at = {t: i for i, t in enumerate(tasks)}
    total = 0.0
    for group in partition:
        for j in group:
            others = [affinity[at[i], at[j]] for i in group if i != j]
            total += float(np.mean(others)) if others else 0.0
    return total


def tag_grouping(tasks: list[str], affinity: np.ndarray) -> list[list[str]]:
    """The partition TAG would choose from these affinities (ties: the fewest groups, then task order)."""
    best = max(partitions(tasks), key=lambda p: (round(tag_score(tasks, affinity, p), 12), -len(p)))
    return sorted((sorted(g, key=tasks.index) for g in best), key=lambda g: tasks.index(g[0]))


def _fmt_groups(groups: list[list[str]]) -> str:
    return ", ".join("{" + ", ".join(g) + "}" for g in groups)


def _delta(a: Analysis, g: Group, task: str) -> tuple[float, float]:
    df = a.per_task.get(task)
    if df is None or df.empty:
        return np.nan, np.nan
    row = df[df["name"] == g.name]
    return (float(row["delta"].iloc[0]), float(row["p"].iloc[0])) if len(row) else (np.nan, np.nan)


def task_sentences(a: Analysis, w: Why) -> list[str]:
    """Per main task of the group: its Δ vs STL, tied to its worst conflict and the affinity onto it."""
    out = []
    for j, t in enumerate(w.tasks):
        if t in w.group.auxiliary:
            continue
        d, p = _delta(a, w.group, t)
        if ok(d):
            sig = ", significant" if ok(p) and p < ALPHA else ""
            head = f"{t} is {abs(d):.1f}% {'behind' if d < 0 else 'ahead of'} STL under {w.group.name}{sig}"
        else:
            head = f"{t} (no STL baseline) under {w.group.name}"
        others = [i for i in range(len(w.tasks)) if i != j]
        worst = max(others, key=lambda i: (w.conflict[i, j], -w.cosine[i, j]))
        onto = ", ".join(f"{w.tasks[i]}'s {w.affinity[i, j]:+.2g}" for i in others)
        helped = [w.tasks[i] for i in others if w.affinity[i, j] > 0]
        verdict = ("every other task's step lowers its loss" if len(helped) == len(others) else
                   f"only {', '.join(helped)}'s step lowers its loss" if helped else
                   "no other task's step lowers its loss")
        if all(abs(w.cosine[i, j]) < NEAR_ZERO_COSINE for i in others):
            grads = (f"its gradients are nearly orthogonal to the others' (mean cosine "
                     f"{', '.join(f'{w.cosine[i, j]:+.2f} with {w.tasks[i]}' for i in others)}: a sign that flips "
                     f"around zero)")
        else:
            grads = (f"its gradients conflict with {w.tasks[worst]}'s on {w.conflict[worst, j]:.0%} of measured steps "
                     f"(mean cosine {w.cosine[worst, j]:+.2f})")
        if weak_onto(w, j):
            verdict += (f", each under a tenth of its own step's effect ({w.affinity[j, j]:+.2g}): the tasks barely "
                        "interact")
        out.append(f"{head}; {grads}; the affinity onto it is {onto}: {verdict}.")
    return out


def weak_onto(w: Why, j: int) -> bool:
    """Whether every other task's affinity onto task ``j`` is under ``WEAK_AFFINITY`` of j's own."""
    own = w.affinity[j, j]
    return bool(own > 0 and all(abs(w.affinity[i, j]) < WEAK_AFFINITY * own for i in range(len(w.tasks)) if i != j))


def tag_sentence(a: Analysis, w: Why) -> str:
    """TAG's grouping from ``w``'s affinities, and whether the grid's Δ vs STL agree with it: a task TAG
    keeps with others should not lose to STL significantly, and a task it sets apart should not gain."""
    groups = tag_grouping(w.tasks, w.affinity)
    alone = {g[0] for g in groups if len(g) == 1}
    verdicts = []
    for t in w.group.main:
        d, p = _delta(a, w.group, t)
        if not ok(d):
            continue
        sig = ok(p) and p < ALPHA
        if t in alone and d > 0 and sig:
            verdicts.append(f"disagrees on {t} (TAG sets it apart, yet it gains {d:.1f}% significantly)")
        elif t not in alone and d < 0 and sig:
            verdicts.append(f"disagrees on {t} (TAG groups it, yet it loses {abs(d):.1f}% significantly)")
        else:
            verdicts.append(f"agrees on {t} ({'set apart' if t in alone else 'grouped'}; Δ {fmt_pct(d)}"
                            f"{', significant' if sig else ', not significant'})")
    tail = f" The grid {'; '.join(verdicts)}." if verdicts else ""
    if all(weak_onto(w, j) for j in range(len(w.tasks))):
        tail += (" Every affinity here is under a tenth of the tasks' own steps' effects: too close to zero to "
                 "support a grouping.")
    return (f"From {w.group.name}'s affinities TAG would train {_fmt_groups(groups)} "
            f"(score {tag_score(w.tasks, w.affinity, groups):+.3g}; all together "
            f"{tag_score(w.tasks, w.affinity, [list(w.tasks)]):+.3g}).{tail}")


def why_section(a: Analysis) -> str:
    """The report's section: what was measured, a table of every measured group, and in words for the
    equal-weights groups: each task's Δ tied to its conflicts and affinities, and TAG's grouping."""
    whys = measured(a)
    if not whys:
        return ""
    every = "/".join(str(e) for e in sorted({w.every for w in whys} - {None})) or "a few"
    intro = (f"Measured during training every {every} steps on the parameters the tasks share, on the step's "
             "own batches (`lepton_bench/run/diagnostics.py`): the cosine of each pair of task gradients (negative: "
             "conflict; in brackets the share of measured steps where it was), and the TAG affinity Z(i→j) = "
             "1 − L_j(θ − η g_i) / L_j(θ) of a look-ahead SGD step on task i's gradient g_i alone (η the step's "
             "learning rate; Fifty et al. 2021): positive when i's step lowers j's loss. Means over measured steps and "
             "seeds; TAG's grouping is the partition of the tasks with the largest total affinity onto each "
             "task from its group. Heatmaps and curves below.")
    rows = ["| group | measurements | mean cosine per pair (share of steps in conflict) | TAG's grouping |",
            "|---|---|---|---|"]
    for w in whys:
        cells = [f"{w.tasks[i]}·{w.tasks[j]} {w.cosine[i, j]:+.2f} ({w.conflict[i, j]:.0%})"
                 for i in range(len(w.tasks)) for j in range(i + 1, len(w.tasks))]
        rows.append(f"| {w.group.name} | {w.points} | {'; '.join(cells)} | "
                    f"{_fmt_groups(tag_grouping(w.tasks, w.affinity))} |")
    words = []
    for w in whys:
        if w.group.weighting == "ew":
            words += [" ".join(task_sentences(a, w)), tag_sentence(a, w)]
    return "\n\n".join([intro, collapsible(f"Every measured variant ({len(whys)})", "\n".join(rows))
                          if len(whys) > FOLD_ROWS else "\n".join(rows), *words, difference_sentence(whys),
                          *contrast_why_sentences(a, whys)])


def contrast_why_sentences(a: Analysis, whys: Sequence[Why]) -> list[str]:
    """For each contrast grid (``Grid.contrast``: the same tasks at another budget or design), the equal-weights
    groups measured in both, pair by pair: the mean gradient cosine there → here, and TAG's grouping."""
    out = []
    for name, other in a.contrast.items():
        there = {w.group.name: w for w in measured(other)}
        parts = []
        for w in whys:
            t = there.get(w.group.name)
            if w.group.weighting != "ew" or t is None or t.tasks != w.tasks:
                continue
            pairs = "; ".join(f"{w.tasks[i]}·{w.tasks[j]} {t.cosine[i, j]:+.2f} → {w.cosine[i, j]:+.2f}"
                              for i in range(len(w.tasks)) for j in range(i + 1, len(w.tasks)))
            parts.append(f"`{w.group.name}`: {pairs}; TAG's grouping {_fmt_groups(tag_grouping(t.tasks, t.affinity))}"
                         f" → {_fmt_groups(tag_grouping(w.tasks, w.affinity))}")
        if parts:
            out.append(f"**Against `{name}`** ({a.differs_from(other)}: [its report](../{name}/README.md)), the mean "
                       f"gradient cosine of each pair there → here: {'. '.join(parts)}.")
    return out


# ---------------------------------------------------------------- plots

def references(whys: Sequence[Why]) -> list[Why]:
    """The groups the heatmaps show: the equal-weights group of the most tasks (else the first of the most), and
    a group of its own only for a task set that reference does not hold."""
    def rank(w: Why) -> tuple:   # most tasks; equal weights; hard sharing; every label (no budget); by name
        full = all(label_share(w.group, t) == 1 for t in w.tasks)
        return -len(w.tasks), w.group.weighting != "ew", w.group.architecture != "hard", not full, w.group.name

    refs: list[Why] = []
    for w in sorted(whys, key=rank):
        if not any(set(w.tasks) <= set(r.tasks) for r in refs):
            refs.append(w)
    return refs


def differences(whys: Sequence[Why]) -> list[tuple[Why, Why, float, float]]:
    """(group, its reference, the largest |difference| of a pair's mean cosine, of an affinity) for every
    measured group other than the references, against the reference's matrices on the group's tasks."""
    refs = references(whys)
    out = []
    for w in whys:
        if any(w is r for r in refs):
            continue
        ref = next(r for r in refs if set(w.tasks) <= set(r.tasks))
        at = [ref.tasks.index(t) for t in w.tasks]
        off = ~np.eye(len(w.tasks), dtype=bool)
        with np.errstate(invalid="ignore"):
            out.append((w, ref, float(np.nanmax(np.abs(w.cosine - ref.cosine[np.ix_(at, at)])[off])),
                        float(np.nanmax(np.abs(w.affinity - ref.affinity[np.ix_(at, at)])[off]))))
    return out


def difference_sentence(whys: Sequence[Why]) -> str:
    """How far the other measured groups' matrices are from their reference's, in one sentence."""
    diffs = differences(whys)
    if not diffs:
        return ""
    far_c = max(diffs, key=lambda d: d[2])
    far_a = max(diffs, key=lambda d: d[3])
    refs = ", ".join(dict.fromkeys(d[1].group.name for d in diffs))
    who = f"The other {len(diffs)} measured variants differ" if len(diffs) > 1 else "The other measured variant differs"
    return (f"{who} from {refs} by at most "
            f"{far_c[2]:.2f} in a pair's mean cosine ({far_c[0].group.name}) and {far_a[3]:.2g} in an affinity "
            f"({far_a[0].group.name}); the heatmaps show {refs} only, the bottom panel every variant's largest "
            "difference.")


def plot_why(a: Analysis, path: Path) -> bool:
    """The reference groups' two T x T heatmaps (mean cosine, mean affinity), and one panel of how far every
    other measured group's matrices are from its reference's (its largest difference of each)."""
    whys = measured(a)
    if not whys:
        return False
    refs, diffs = references(whys), differences(whys)
    names, _ = short_names([d[0].group.name for d in diffs]) if diffs else ([], "")
    fig = _figure(10.4, 3.0 * len(refs) + (0.22 * len(diffs) + 1.2 if diffs else 0) + 0.5)
    heights = [3.0] * len(refs) + ([0.22 * len(diffs) + 1.0] if diffs else [])
    grid = fig.add_gridspec(len(heights), 2, height_ratios=heights)
    span = max(1e-9, max(float(np.nanmax(np.abs(w.affinity))) for w in refs))
    for r, w in enumerate(refs):
        short = [t.replace("conll2003_", "") for t in w.tasks]
        for m, (data, title, vmax, cmap) in enumerate(((w.cosine, "mean gradient cosine (red: conflict)", 1.0, "RdBu"),
                                                       (w.affinity, "TAG affinity i→j (purple: helps)", span,
                                                        "PuOr"))):
            ax = fig.add_subplot(grid[r, m])
            im = ax.imshow(data, cmap=cmap, vmin=-vmax, vmax=vmax)
            for i in range(len(w.tasks)):
                for j in range(len(w.tasks)):
                    dark = abs(data[i, j]) > 0.6 * vmax   # white on the dark ends of the colour map
                    ax.text(j, i, f"{data[i, j]:.2f}" if m == 0 else f"{data[i, j]:.2g}", ha="center",
                            va="center", fontsize=7, color="white" if dark else "black")
            ax.set_xticks(range(len(short)), short, fontsize=7, rotation=30)
            ax.set_yticks(range(len(short)), short, fontsize=7)
            ax.set_title(f"{w.group.name}\n{title}", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8)
    if diffs:
        ax = fig.add_subplot(grid[len(refs), :])
        y = np.arange(len(diffs))
        ax.barh(y - 0.2, [d[2] for d in diffs], height=0.4, color="tab:red", label="largest |Δ cosine|")
        ax.barh(y + 0.2, [d[3] / span for d in diffs], height=0.4, color="tab:purple",
                label=f"largest |Δ affinity| ÷ {span:.2g} (the heatmap's scale)")
        ax.set_yticks(y, names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("difference from the reference's matrix (0: the same picture)", fontsize=8)
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)   # off the bars
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{a.grid}: gradient conflict and task affinity, over measured steps and seeds", fontsize=9)
    _save(fig, path)
    return True


def plot_why_curves(a: Analysis, path: Path) -> bool:
    """Over training, for each equal-weights group measured (else the first): each pair's cosine and the
    affinity onto each task from each other task."""

    whys = measured(a)
    chosen = [w for w in whys if w.group.weighting == "ew"] or whys[:1]
    if not chosen:
        return False
    fig = _figure(11, 3.2 * len(chosen))
    axs = fig.subplots(len(chosen), 2, squeeze=False)
    for (ax_c, ax_a), w in zip(axs, chosen, strict=True):
        n = len(w.tasks)
        for i in range(n):
            for j in range(n):
                if i < j:
                    ax_c.plot(w.steps, w.cosine_curve[:, i, j], marker=".", label=f"{w.tasks[i]} · {w.tasks[j]}")
                if i != j:
                    ax_a.plot(w.steps, w.affinity_curve[:, i, j], marker=".", label=f"{w.tasks[i]} → {w.tasks[j]}")
        for ax, title in ((ax_c, "gradient cosine"), (ax_a, "TAG affinity Z(i→j)")):
            ax.axhline(0, color="0.5", lw=0.8)
            ax.set_xlabel("step")
            ax.set_title(f"{w.group.name}\n{title}, mean over seeds", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    _save(fig, path)
    return True
