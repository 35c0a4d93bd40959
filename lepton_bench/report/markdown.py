"""The README's text: the summary in words, the setting, the per-task and overall tables, the whole README."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from math import prod
from pathlib import Path
from typing import Any

from .analysis import FLAT, STL_ENTRY, Analysis, last_gain, mean_ranks, stl_cost
from .baselines import standing_section
from .budget import budget_section, headline
from .claims import claims_section, literature_section
from .format import bold, collapsible, fmt_num, fmt_pct, fmt_pm, fmt_ratio, folded_table, md_cell, md_table, plural
from .glance import glance_section, wins
from .groups import fmt_value
from .records import get
from .stats import ALPHA, NAN, ok, significant, welch_p
from .tuning import at_edge, axis_values, edge_gain, incomplete, sensitivity_rows
from .why import why_section


def summary(a: Analysis) -> str:
    """The verdict at the top, generated from the numbers: the label-budget crossover (when a budget varies),
    the first-screen table of the variants that matter (``glance``), then, folded, the findings in words — a
    headline, one bullet per multi-task variant (best Δm first), adaptive against static weights, auxiliary
    tasks — and the notes a reader must not miss (unfinished tuning, the edge of a range, failures)."""
    paragraphs = []
    no_stl = [t for t in a.tasks if not a.has_stl(t)]
    if not a.ok:
        paragraphs.append("No run finished successfully: there is nothing to compare yet.")
    elif not a.mtl:
        paragraphs.append(f"Only single-task (STL) runs so far ({plural(len(a.groups), 'variant')} on "
                          f"{', '.join(a.tasks)}): there is no multi-task variant to compare with them yet.")
    else:
        head, bullets = _wins_sentences(a)
        curve = headline(a)   # under a varied label budget, the crossover comes first
        paragraphs += [f"**Label budget**: {curve}"] if curve else []
        paragraphs += [glance_section(a)]
        words = [head, "\n".join(f"- {b}" for b in bullets), " ".join(_adaptive_sentence(a)),
                 " ".join(auxiliary_sentences(a))]
        paragraphs += [collapsible("Every multi-task variant in words", "\n\n".join(w for w in words if w))]
    notes = []
    if no_stl:
        notes.append(f"There are no STL records for {', '.join(no_stl)}: Δ vs STL and Δm leave "
                     f"{'it' if len(no_stl) == 1 else 'them'} out.")
    unfinished = [f for f in a.tuning if incomplete(f)]
    if unfinished:
        notes.append(f"**Tuning unfinished**: {len(unfinished)} of {len(a.tuning)} tuned configurations lack "
                     "runs at some sweep point (see Tuning: every sweep point); their chosen points, and every "
                     "figure read from them, may change as the grid finishes.")
    edge = edge_split(a)
    if edge:
        ends = "; ".join(f"`{axis}` = {fmt_value(value)}, the {side} tried, for {len(labels)}"
                         + (f" ({len(flat)} of them levelled off there)" if flat else "")
                         for (axis, value, side), labels, flat, _ in edge)
        still = sum(len(rising) for *_, rising in edge)
        tail = (f"a wider axis could still move the {still} whose score still rises there" if still else
                "every one of them has levelled off there (within one seed std of the next value in)")
        notes.append(f"Some chosen points sit at the edge of the range swept ({ends} of {len(a.tuning)} tuned "
                     f"configurations): {tail} (see Tuning: every sweep point).")
    if a.failed:
        notes.append(f"{plural(len(a.failed), 'run')} failed and "
                     f"{'are' if len(a.failed) > 1 else 'is'} left out of every statistic (see Failed runs).")
    paragraphs.append(" ".join(notes))
    return "\n\n".join(p for p in paragraphs if p)


def _wins_sentences(a: Analysis) -> tuple[str, list[str]]:
    """The headline (how many MTL variants beat STL significantly somewhere) and, per MTL variant (best Δm
    first), where it is ahead of STL, its Δm and training-cost ratio; the variants ahead nowhere with no
    positive Δm share the last bullet."""
    mtl = a.overall[~a.overall["stl"]]
    n_sig = sum(any("significant" in w for w in wins(a, n)) for n in mtl["name"])
    if any(ok(p) for df in a.per_task.values() for p in df.loc[~df["aux"], "p"]):
        head = (f"{n_sig} of {plural(len(mtl), 'multi-task variant')} "
                f"beat{'s' if len(mtl) == 1 else ''} their matched STL baseline significantly on at least one task "
                f"(primary test metric, Welch's t-test, p < {ALPHA}).")
    else:
        head = "No difference to STL can be tested for significance yet: that needs at least 2 seeds on both sides."
    bullets, losers = [], []
    for _, row in mtl.iterrows():
        ahead = wins(a, row["name"])
        if not ahead and not (ok(row["dm"]) and row["dm"] > 0):
            cost = (f"{fmt_ratio(row['train_ratio'])} STL training time" if ok(row["train_ratio"])
                    else "training time vs STL unknown")
            losers.append(f"{row['name']} (Δm {fmt_pct(row['dm'])}, {cost})")
            continue
        # "ahead", not "beats": a mean ahead is not a win unless marked significant
        where = f"is ahead of STL on {', '.join(ahead)}" if ahead else "is ahead of STL on no task's primary metric"
        cost = (f"at {fmt_ratio(row['train_ratio'])} the training time of the STL models together"
                if ok(row["train_ratio"]) else "(its training time vs STL is unknown)")
        bullets.append(f"{row['name']} {where}; Δm {_fmt_dm(row)} {cost}.")
    if losers:
        bullets.append(f"{', '.join(losers)} {'is' if len(losers) == 1 else 'are'} ahead of STL on no task "
                       f"and {'has' if len(losers) == 1 else 'have'} no positive Δm.")
    return head, bullets


def _fmt_dm(row: Mapping[str, Any]) -> str:
    """``+0.80% (95% CI ± 0.30)``; the mean alone with one seed."""
    if not ok(row["dm"]):
        return "— (no STL baseline)"
    return fmt_pct(row["dm"]) + (f" (95% CI ± {row['dm_ci']:.2f})" if ok(row["dm_ci"]) else "")


def _adaptive_sentence(a: Analysis) -> list[str]:
    """Whether any adaptive weighting beats the best point of the static-weight sweep (equal or static
    weights) of its own design (same stems and trunk), architecture and main tasks, by Δm (a Δm over
    NER alone, with POS auxiliary, is no point of a sweep over NER, POS and chunking)."""
    mtl = a.overall[~a.overall["stl"] & a.overall["dm"].notna()]
    out = []
    for _, rows in mtl.groupby(["design", "architecture", "main"], sort=False):   # rows stay sorted by Δm
        static = rows[rows["static"]]
        adaptive = rows[~rows["static"]]
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
            sig = "" if not ok(p) else f", Welch p = {p:.3f}" + ("" if significant(p) else ", not significant")
            items.append(f"{r['name']} (Δm {fmt_pct(r['dm'])}{sig})")
        # "ahead of", not "beat": a higher mean Δm is a win only where the test says so
        verb = "is" if len(better) == 1 else "are"
        out.append(f"{len(better)} of {plural(len(adaptive), 'adaptive weighting')} {verb} ahead of {head}: "
                   f"{', '.join(items)}.")
    return out or ["No design has both a static-sweep point (equal or static weights) and an adaptive weighting of "
                   "the same architecture with a Δm, so adaptive and static weightings cannot be compared."]


def setting(a: Analysis, source: str) -> str:
    """The setting: runs, seeds, budget, limits, environment and date."""
    cfgs = [r.get("config") or {} for r in a.ok] or [r.get("config") or {} for r in a.records]
    steps = sorted({get(c, "train", "steps") for c in cfgs} - {None})
    seeds = sorted({r["seed"] for r in a.records if r.get("seed") is not None})
    lines = [f"- Runs: {len(a.records)} in `{source}`, {len(a.ok)} ok, {len(a.failed)} failed; "
             f"{plural(len({r['variant'] for r in a.records}), 'variant')}; seeds {', '.join(map(str, seeds)) or '—'}",
             f"- Budget: {', '.join(map(str, steps)) or '—'} training steps"
             + (" (runs differ in budget: their comparisons are not matched)" if len(steps) > 1 else "")]
    for key in ("limit_train", "limit_eval"):
        vals = sorted({str(c.get(key)) for c in cfgs})
        lines.append(f"- `{key}`: {', '.join('none' if v == 'None' else v for v in vals)}")
    if not a.tuning:
        lines += _untuned_line(cfgs)
    if a.auxiliary:
        lines.append(_auxiliary_line(a))
    lines += _label_lines(a)
    lines += _convergence_lines(a)
    lines.append(_env_line(a))
    lines += _packed_lines(a)
    finished = sorted(r["finished_at"] for r in a.records if r.get("finished_at"))
    lines.append(f"- Date: {finished[-1] if finished else '—'} (the latest finished run)")
    return "\n".join(lines)


def _untuned_line(cfgs: list[dict]) -> list[str]:
    """A grid without search axes ran every variant at one learning rate: a reader must know rankings may move."""
    lrs = sorted({get(c, "train", "lr") for c in cfgs} - {None})
    if not lrs:
        return []
    return [f"- Learning rate: not tuned, every variant at `train.lr` = {', '.join(f'{v:g}' for v in lrs)} "
            "(each method's own settings at their defaults). A tuned grid (`tagging`: every variant, STL included, "
            "on one learning-rate axis) saw the chosen rate differ between variants and reorder them, so a ranking "
            "here holds at this rate, not at each variant's best"]


def _convergence_lines(a: Analysis) -> list[str]:
    """How far the budget is from convergence, per task: the last validation gain per 100 steps of its STL
    baseline(s) and of the equal-weights hard-sharing group(s) that train it (mean curves over seeds)."""
    parts, rising = [], []
    for t in a.tasks:
        shown = [g for g in a.groups if t in g.tasks and (g.stl or (g.weighting == "ew" and g.architecture == "hard"))]
        gains = [(g.name, last_gain(g, t, a.primary[t])) for g in shown]
        gains = [(n, v) for n, v in gains if ok(v)]
        if not gains:
            continue
        parts.append(f"{t} " + ", ".join(f"{v:+.2f} ({md_cell(n)})" for n, v in gains))
        if any(v >= FLAT for _, v in gains):
            rising.append(t)
    if not parts:
        return []
    verdict = (f"{', '.join(rising)} {'is' if len(rising) == 1 else 'are'} still rising at the end of the budget, "
               "so for them the grid measures the speed of learning as much as final quality"
               if rising else "Every curve has levelled off (under 0.1 points per 100 steps)")
    return [f"- Convergence (the validation {'/'.join(sorted(set(a.primary.values())))} gained over the last "
            f"evaluation interval, in points per 100 steps, mean over seeds): {'; '.join(parts)}. {verdict}; "
            "the checkpoint is chosen on validation, so a falling curve costs nothing"]


def _auxiliary_line(a: Analysis) -> str:
    """Which variants had which auxiliary tasks, in one line (entries apart by ';': labels hold commas)."""
    items = [f"{', '.join(aux)} in {name}" for name, aux in a.auxiliary.items()]
    return ("- Auxiliary tasks (trained, reported, left out of checkpoint selection, Δm and the verdict): "
            + "; ".join(md_cell(i) for i in items))


def tuning_section(a: Analysis) -> str:
    """Every sweep point of every variant with its validation and test score; the chosen one marked."""
    tune = sorted({f.tune_seeds for f in a.tuning}, key=str)
    protocol = ("every point on every seed" if tune == [None] else
                "budget-saving: every point on the first "
                + " or ".join(str(k) for k in tune if k is not None)
                + " seeds (the tuning seeds), the remaining seeds at the chosen point only")
    # a family's budget: the product, over its axes, of the values any family was tried at (not the points
    # it has so far: an unfinished tuning would read as a smaller budget)
    values = axis_values(a.tuning)
    budgets: dict[tuple, list[str]] = {}   # (axes, points) -> variants
    for f in a.tuning:
        budgets.setdefault((f.axes, prod(len(values[k]) for k in f.axes)), []).append(f.label or f.variant)
    common = max(budgets, key=lambda b: (len(budgets[b]), -b[1]))   # the most variants; ties: the smaller
    axes_text = ", ".join(f"`{k}`" for k in common[0])
    if len(budgets) == 1:
        budget = f"Search axes: {axes_text}; every variant, STL included, was tried at the same points ({protocol})."
    else:   # a grid's extra axes: some variants had a larger budget, which a reader must know
        more = "; ".join(f"{', '.join(f'`{k}`' for k in axes)} ({n} points) for {', '.join(sorted(set(vs)))}"
                         for (axes, n), vs in budgets.items() if (axes, n) != common)
        budget = (f"Search axes: {axes_text} ({common[1]} points) for every variant, STL included ({protocol}); "
                  f"a larger budget for some: {more}. A comparison with those variants favours them by that "
                  "budget: where they win, the sensitivity table below shows whether their shared axes alone "
                  "already did.")
    head = (f"{budget} Each variant's point is chosen on validation only: the best mean over its "
            "tuning seeds of the mean validation primary metric of its main tasks (at the checkpoint each run "
            "selected on validation); every table above shows that point (✓), tuned against tuned. Score: the "
            "same mean on validation, and on test for scale — test never chooses. n: tuning seeds (+ seeds run "
            "later at the chosen point).")
    headers = ["variant", "sweep point", "n", "validation ↑", "test ↑", "chosen"]
    return "\n\n".join([head, *edge_sentences(a), folded_table(headers, sensitivity_rows(a.tuning), left=2)])


def edge_sentences(a: Analysis) -> list[str]:
    """A warning per end of a numeric axis where chosen points sit: the sweep may not have found their best."""
    out = []
    for (axis, value, side), labels, flat, rising in edge_split(a):
        text = (f"**At the edge of the range**: for {len(labels)} of {len(a.tuning)} tuned configurations the "
                f"chosen point has the {side} `{axis}` tried ({fmt_value(value)}): {', '.join(sorted(labels))}.")
        if flat:
            text += (f" For {len(flat)} of them the validation score there is within one seed std of the next value "
                     f"in (gain {_gains(flat)}): the curve has levelled off at the end, so the range holds "
                     f"their optimum as closely as the seeds can tell.")
        if rising:
            some = "The others'" if flat else "Their"
            text += (f" {some} best may lie beyond the range swept (gain over the next value in: {_gains(rising)}): "
                     f"the comparison stays fair (every variant had the same points), but a wider `{axis}` axis "
                     f"could still move them.")
        out.append(text)
    return out


def edge_split(a: Analysis) -> list[tuple[tuple[str, Any, str], list[str], list, list]]:
    """Per end of an axis where chosen points sit (most first): its labels, then (label, gain) of those whose
    validation score there is within one seed std of the next value in (levelled off) and of the others."""
    values = axis_values(a.tuning)
    by_label = {f.label or f.variant: f for f in a.tuning}
    out = []
    for end, labels in sorted(at_edge(a.tuning).items(), key=lambda kv: -len(kv[1])):
        flat, rising = [], []
        for label in sorted(labels):
            gain = edge_gain(by_label[label], end[0], values[end[0]])
            (flat if gain is not None and gain[0] <= gain[1] else rising).append((label, gain))
        out.append((end, labels, flat, rising))
    return out


def _gains(items: list[tuple[str, tuple[float, float] | None]]) -> str:
    """``label +0.0004 (seed std 0.0021)`` for each end point that has a neighbour, '; '-joined."""
    parts = [f"{label} {g[0]:+.4f} (seed std {g[1]:.4f})" for label, g in items if g is not None]
    return "; ".join(parts) if parts else "its neighbour was not run"


def _label_lines(a: Analysis) -> list[str]:
    """Where the labels of the report's tasks come from, when not by hand: the tasks' ``label_note``
    (e.g. silver labels) and derived-label tasks' sources; tasks with one note share a line."""
    from ..tasks import TASKS  # here: the report's import stays light

    notes: dict[str, list[str]] = {}
    for t in a.tasks:
        spec = TASKS.get(t) if t in TASKS else None
        if spec is not None and spec.label_note:
            notes.setdefault(spec.label_note, []).append(t)
        if spec is not None and spec.derived_from:
            derived = f"derived from {spec.derived_from}'s labels by a declared mapping (tasks.py)"
            notes.setdefault(derived, []).append(t)
    return [f"- Labels of {', '.join(ts)}: {md_cell(note)}" for note, ts in notes.items()]


def auxiliary_sentences(a: Analysis) -> list[str]:
    """Per main task of the groups with auxiliary tasks: how often those groups are ahead of (and
    significantly ahead of or behind) its STL baseline, and the range of their Δ."""
    names = set(a.auxiliary)
    out = []
    for t in a.tasks:
        df = a.per_task[t]
        rows = df[df["name"].isin(names) & ~df["aux"] & df["delta"].notna()]
        if rows.empty:
            continue
        ahead = int((rows["delta"] > 0).sum())
        up = int(((rows["delta"] > 0) & rows["p"].map(significant)).sum())
        down = int(((rows["delta"] < 0) & rows["p"].map(significant)).sum())
        best = rows.loc[rows["delta"].idxmax()]
        p = f", p = {best['p']:.2f}" if ok(best["p"]) else ""
        out.append(f"With auxiliary tasks, {t} ({a.primary[t]}) is ahead of its STL baseline in {ahead} of "
                   f"{plural(len(rows), 'variant')} ({up} significantly; {down} significantly behind), Δ from "
                   f"{fmt_pct(rows['delta'].min())} to {fmt_pct(rows['delta'].max())}; the best is {best['name']} "
                   f"({fmt_pct(best['delta'])}{p}).")
    return out


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
    # on which machines the runs ran, by count: their times are only comparable within one machine
    machines = Counter(f"{(r.get('env') or {}).get('device', '?')} ({(r.get('env') or {}).get('device_name') or '?'})"
                       for r in a.ok)
    where = (f" (runs per machine: {', '.join(f'{m} {n}' for m, n in sorted(machines.items()))}; the cost columns "
             f"average over them)") if len(machines) > 1 else ""
    return line + (f"\n- Runs differ in environment: {', '.join(differ)}{where}" if differ else "")


def _packed_lines(a: Analysis) -> list[str]:
    """Which runs were packed several to a device (``--runs-per-device``; ``env.packed`` of their records), at
    how many per device: their times and throughputs are those of runs sharing a device."""
    packed = [r for r in a.records if isinstance((r.get("env") or {}).get("packed"), dict)]
    if not packed:
        return []
    how = Counter((r["env"]["packed"].get("runs_per_device"), r["env"].get("device") or "?") for r in packed)
    per_variant = Counter(r["variant"] for r in a.records)
    which = Counter(r["variant"] for r in packed)
    at = ", ".join(f"{plural(n, 'run')} at {k} per device on {dev}" for (k, dev), n in sorted(how.items(), key=str))
    return [f"- Packed runs: {len(packed)} of {len(a.records)} ran packed, several runs at a time on one device "
            f"(`--runs-per-device`; each its own process): {at}; "
            + ", ".join(f"{md_cell(v)} ({n} of {per_variant[v]})" for v, n in sorted(which.items()))
            + ". Their time, throughput and MFU figures are those of a run sharing its device, not of a run alone: "
            "compare costs only between runs packed alike (peak memory stays each run's own)."]


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
        label = r["name"] + (" (STL)" if r["is_ref"] else " (aux)" if r["aux"] else "")
        cells = [md_cell(label)] + ([md_cell(r["design"])] if several else [])
        cells.append(str(r["n"]))
        for k in a.metrics[task]:
            s = fmt_pm(r[f"{k}:mean"], r[f"{k}:std"])
            cells.append(bold(s) if ok(r[f"{k}:mean"]) and r[f"{k}:mean"] >= best[k] - 1e-12 else s)
        ci = r[f"{primary}:ci"]
        cells.append(f"{ci:.4f}" if ok(ci) else "")
        cells.append("" if r["is_ref"] else fmt_pct(r["delta"]) + ("*" if significant(r["p"]) else ""))
        rows.append(cells)
    missing = sorted(set(df.loc[df["baseline"] == "", "design"]))
    note = (f"\n\nNo STL records for design{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
            f"no Δ vs STL for {'their' if len(missing) > 1 else 'its'} rows.") if missing else ""
    return f"### {task} (primary: {primary})\n\n" + folded_table(headers, rows) + note


def overall_section(a: Analysis) -> str:
    """The overall table: Δm with CI and cost, MTL rows first, then STL rows and the STL models together."""
    df = a.overall
    cuda = bool(df["cuda_mb"].notna().any())
    headers = ["variant", "tasks", "n", "Δm ↑ (%, ± 95% CI)", "mean rank ↓", "train time ↓ (s)", "train ÷ STL ↓",
               "GFLOP/step ↓", "peak RSS ↓ (MiB)"] + (["CUDA alloc ↓ (MiB)"] if cuda else []) + [
               "params ↓ (M)", "params ÷ STL ↓", "inference ↓ (s)", "inference ÷ STL ↓"]
    best_dm = df[~df["stl"]].groupby("main")["dm"].max()   # Δm of one main-task set is compared within it
    rows = []
    for _, r in df.iterrows():
        dm = fmt_pm(r["dm"], r["dm_ci"], 2, sign=True)
        dm = "" if r["stl"] else bold(dm) if ok(r["dm"]) and r["dm"] >= best_dm.get(r["main"], NAN) - 1e-12 else dm
        rows.append([md_cell(r["name"]), _tasks_cell(a, r["name"], r["tasks"]), str(r["n"]), dm,
                     "" if r["stl"] else fmt_num(r["mean_rank"], 2), fmt_num(r["train_s"], 1),
                     fmt_ratio(r["train_ratio"]), fmt_num(r["flops"] / 1e9, 2),
                     fmt_num(r["rss_mb"], 0)]
                    + ([fmt_num(r["cuda_mb"], 0)] if cuda else [])
                    + [fmt_num(r["params"] / 1e6, 2), fmt_ratio(r["params_ratio"]), fmt_num(r["infer_s"], 1),
                       fmt_ratio(r["infer_ratio"])])
    rows += _stl_together_row(a, cuda)
    return folded_table(headers, rows, left=2) + _stl_rank_note(a)


def _stl_rank_note(a: Analysis) -> str:
    """The STL baselines' own mean rank in each comparison (they are no row of the table)."""
    stl = {k.split(":", 1)[1]: v for k, v in mean_ranks(a).items() if k.startswith(f"{STL_ENTRY}:") and ok(v)}
    if not stl:
        return ""
    items = [f"{v:.2f} among the variants on {key.split('|')[1]} ({key.split('|')[0]})"
             for key, v in sorted(stl.items())]
    return "\n\nMean rank of the STL baselines: " + "; ".join(items) + "."


def _tasks_cell(a: Analysis, name: str, tasks: str) -> str:
    """A group's tasks, ``conll2003+conll2003_pos (aux)``: its auxiliary ones marked."""
    aux = a.auxiliary.get(name, ())
    return "+".join(t + (" (aux)" if t in aux else "") for t in tasks.split("+"))


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
        rows.append([md_cell(f"STL models together: {', '.join(key)}"), "+".join(g.tasks), "", "", "",
                     fmt_num(cost["train_s"], 1), "1.00×", fmt_num(cost["flops"] / 1e9, 2), "—"]
                    + (["—"] if cuda else []) + [fmt_num(cost["params"] / 1e6, 2), "1.00×",
                                                 fmt_num(cost["infer_s"], 1), "1.00×"])
    return rows


def failed_section(a: Analysis) -> str:
    rows = [[md_cell(r["run_id"]), md_cell(r.get("error") or "—")[:300]] for r in a.failed]
    return ("These runs are left out of every statistic above.\n\n"
            + md_table(["run_id", "error"], rows, left=2))


OVERALL_NOTE = (
    "Δm (Maninis et al. 2019): per seed of a variant, the mean over its tasks of the mean over each task's "
    "test metrics of (M − M_STL) / M_STL × 100, with M_STL the mean over the STL seeds; positive is better than "
    "STL. Shown as mean ± 95% CI over seeds. Costs are means over seeds; a ratio divides by the sum over the "
    "variant's tasks of the STL baselines (training time, total parameters to serve every task, inference time "
    "over every task's test set), so below 1 is cheaper than one model per task. Mean rank (the convention of the "
    "Nash-MTL and FAMO papers): on each task every test metric's mean is ranked among the variants of the same "
    "design and main tasks and their STL baseline (1 is best, ties share), a task's rank is the mean over its "
    "metrics, and the mean rank the mean over tasks.")

TASK_NOTE = (
    "Test metrics as mean ± sample std over seeds (n seeds; ↑ higher is better, the best mean in bold). "
    "95% CI: half-width of the primary metric's Student-t interval (blank with one seed). Δ vs STL: relative "
    f"change of the primary metric's mean vs the STL baseline, `*` when Welch's t-test gives p < {ALPHA} "
    "(needs 2 seeds on both sides). Each row is compared with the STL baseline of its own design (the task's "
    "stem → trunk × depth, and any other model setting off its default): the same encoders trained alone.")


# Said only where some variant has auxiliary tasks: a grid without any reads as it always did.
TASK_AUX_NOTE = (
    " A row marked (aux): the task is auxiliary in that variant, trained and reported, its Δ vs STL shown, "
    "but left out of checkpoint selection, Δm and the summary's verdict.")

OVERALL_AUX_NOTE = (
    " Δm reads a variant's main tasks only, never its auxiliary ones (marked (aux)); its cost ratios cover "
    "every task it trains, auxiliary ones included: that is what it cost. Δm over different main tasks are not "
    "comparable, so the rows are ordered, and the best Δm is bold, within each set of main tasks.")


def readme(a: Analysis, source: str, plots: Sequence[str]) -> str:
    """The whole README text."""
    out = [f"# lepton_bench report: {a.grid}", summary(a)]
    budget = budget_section(a)
    if budget:   # the verdict as a curve, on the first screen: where a label budget varies
        out += ["## Δ against the label budget", budget]
        out += ["![budget curve](budget_curve.png)"] if "budget_curve.png" in plots else []
    plots = [p for p in plots if p != "budget_curve.png"]   # shown with its section
    out += ["## Setting", setting(a, source)]
    aux = bool(a.auxiliary)
    if a.tasks:
        out += ["## Per task", TASK_NOTE + (TASK_AUX_NOTE if aux else "")] + [task_section(a, t) for t in a.tasks]
    if a.groups:
        out += ["## Overall", OVERALL_NOTE + (OVERALL_AUX_NOTE if aux else ""), overall_section(a)]
    if a.tuning:
        out += ["## Tuning: every sweep point", tuning_section(a)]
        out += ["![sensitivity](sensitivity.png)"] if "sensitivity.png" in plots else []
    plots = [p for p in plots if p != "sensitivity.png"]   # shown with its table
    standing = standing_section(a)
    if standing:
        out += ["## Standing baselines: EW, RLW and the static front", standing]
        out += ["![static front](static_front.png)"] if "static_front.png" in plots else []
    plots = [p for p in plots if p != "static_front.png"]   # shown with its table
    why = why_section(a)
    if why:
        out += ["## Why: gradient conflict and task affinity", why]
        out += [f"![{p[:-4].replace('_', ' ')}]({p})" for p in ("why_heatmaps.png", "why_curves.png") if p in plots]
    plots = [p for p in plots if not p.startswith("why_")]   # shown with their section
    claims = claims_section(a)
    if claims:
        out += ["## The articles' claims", claims]
    literature = literature_section(a)
    if literature:
        here = auxiliary_sentences(a)
        out += ["## What the literature reports", literature]
        out += ["Measured here: " + " ".join(here)] if here else []
    if a.failed:
        out += ["## Failed runs", failed_section(a)]
    if plots:
        out += ["## Plots"] + [f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in plots]
    return "\n\n".join(out) + "\n"
