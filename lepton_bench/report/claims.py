"""Published figures beside what a grid measured: the claims and references the grid's variants declare.

A variant carries its claims (``lepton_bench.variants.Variant.claims``): the report sets each, per
design trained on its task, beside the best STL and the best MTL group by the claim's metric, with
the other metrics the claim names (``beside``) of those same groups, and prints each claim's note.
Only groups that train the task as a main task count: an auxiliary task's metric is no claim.
Claims of kind ``claim`` (the articles') and ``literature`` (published figures of the same setting,
for scale) get a section each; the literature section also lists the variants' ``findings``
(published results in words).
"""

from __future__ import annotations

from typing import Any

from .analysis import Analysis
from .format import fmt_pm, md_cell, md_table, plural
from .records import get
from .stats import NAN, ok


def _declared(a: Analysis, attr: str) -> list[Any]:
    """``claims`` or ``findings`` of the variants the records name (unknown ones skipped, identical
    ones once), in variant-name order."""
    from ..variants import VARIANTS  # here: the report's import stays light

    out: list[Any] = []
    for name in sorted({r["variant"] for r in a.records if r.get("variant")}):
        if name in VARIANTS:
            out += [c for c in getattr(VARIANTS.get(name), attr) if c not in out]
    return out


def variant_claims(a: Analysis, kind: str = "claim") -> list[Any]:
    """The claims of one kind of the variants the records name, in the report's task order."""
    order = {t: i for i, t in enumerate(a.tasks)}
    claims = [c for c in _declared(a, "claims") if c.kind == kind]
    return sorted(claims, key=lambda c: order.get(c.task, len(order)))


def variant_findings(a: Analysis) -> list[Any]:
    """The findings (published results in words) of the variants the records name."""
    return _declared(a, "findings")


def _task_name(task: str) -> str:
    """How people write a task's name (``CoNLL-2003``): the first word of its help."""
    from ..tasks import TASKS

    return TASKS.get(task).help.split()[0].rstrip(":") if task in TASKS else task


def _source(c: Any) -> str:
    """``[Ma & Hovy 2016](url)``: the source, linked where it has an address."""
    return f"[{md_cell(c.source)}]({c.url})" if c.url else md_cell(c.source or "—")


def _claim_rows(a: Analysis, claims: list[Any], beside: list[str], source: bool) -> tuple[list[list[str]], dict]:
    """One row per claim and design trained on its task: the figure, the best STL and the best MTL
    group by its metric (mean ± std over seeds), the ``beside`` metrics of those two groups and the
    gap of the best mean here to the figure; and each claim's note once."""
    rows, notes = [], {}   # note -> its line, each note once
    for c in claims:
        df = a.per_task.get(c.task)
        if df is None or df.empty or f"{c.metric}:mean" not in df:
            continue
        df = df[~df["aux"]]   # an auxiliary task's metric is no claim of its variant's
        for design, part in df.groupby("design", sort=False):
            cells = ([_source(c)] if source else []) + [c.task, c.metric, md_cell(c.setting), md_cell(design),
                                                        f"{c.value:.3f}"]
            best: dict[bool, Any] = {}
            for stl in (True, False):
                side = part[part["stl"] == stl].dropna(subset=[f"{c.metric}:mean"])   # e.g. only diverged runs
                if side.empty:
                    cells += ["—", "—"]
                    continue
                best[stl] = side.loc[side[f"{c.metric}:mean"].idxmax()]
                cells += [md_cell(best[stl]["name"]), fmt_pm(best[stl][f"{c.metric}:mean"],
                                                             best[stl][f"{c.metric}:std"])]
            for m in beside:
                for stl in (True, False):
                    row = best.get(stl)
                    cells.append("" if m not in c.beside else "—" if row is None or f"{m}:mean" not in row
                                 else fmt_pm(row[f"{m}:mean"], row[f"{m}:std"]))
            gap = max((v for v in part[f"{c.metric}:mean"] if ok(v)), default=NAN) - c.value
            cells.append(f"{gap:+.3f}" if ok(gap) else "—")
            rows.append(cells)
        if c.note and c.note not in notes:
            notes[c.note] = f"The {_task_name(c.task)} figure ({c.value:.3f}, {c.metric}): {md_cell(c.note)}."
    return rows, notes


def _epochs(a: Analysis, tasks: list[str]) -> str:
    """Each task's training budget in epochs (steps × batch ÷ training rows, from its STL runs of the longest
    budget), in words: ``"in epochs, CIFAR-10 5.69 (batch 128 of 45,000 rows), ..."``."""
    parts = []
    for t in tasks:
        alone = [r for r in a.ok if list(r.get("tasks") or []) == [t]]
        best = None
        for r in alone or [r for r in a.ok if t in (r.get("tasks") or [])]:
            steps = get(r.get("config") or {}, "train", "steps")
            batch = get(r.get("config") or {}, "tasks", t, "batch_size")
            rows = get(r.get("data") or {}, t, "sizes", "train")
            if steps and batch and rows and (best is None or steps > best[0]):
                best = (steps, batch, rows)
        if best:
            steps, batch, rows = best
            parts.append(f"{_task_name(t)} {steps * batch / rows:.2f} (batch {batch} of {rows:,} rows)")
    return f"the budget in epochs: {', '.join(parts)}" if parts else ""


def _checked_elsewhere(a: Analysis, claims: list[Any]) -> str:
    """Where the claims that another grid checks in their own setting are checked, one sentence."""
    where: dict[str, list[str]] = {}
    for c in claims:
        if c.checked_in and c.checked_in != a.grid and c.task in a.per_task:   # a task this grid trained
            where.setdefault(c.checked_in, []).append(_task_name(c.task))
    if not where:
        return ""
    parts = [f"the {' and '.join(dict.fromkeys(ts))} {'figures' if len(set(ts)) > 1 else 'figure'} by the "
             f"`{g}` grid ([its report](../{g}/README.md))" for g, ts in where.items()]
    return (f"These are {'/'.join(f'{n:,}' for n in a.steps)}-step numbers of this grid's designs, not a test of the "
            f"claims: each claim is checked in its own setting, {'; '.join(parts)}.")


def _measured_here(a: Analysis) -> str:
    """Steps, seeds and devices of the ok runs, in words."""
    steps = a.steps
    seeds = sorted({r["seed"] for r in a.ok})
    devices = sorted({f"{(r.get('env') or {}).get('device', '?')} ({(r.get('env') or {}).get('device_name') or '?'})"
                      for r in a.ok})
    return (f"{', '.join(map(str, steps))} training steps, {plural(len(seeds), 'seed')}, on {'; '.join(devices)}, "
            f"test split (`limit_eval` as in Setting)")


def claims_section(a: Analysis) -> str:
    """The articles' claimed figures beside what this grid measured, per design: its best STL and its
    best MTL group on that task (by the claimed metric), mean ± std over seeds, the ``beside`` metrics
    of those two groups, and the gap of the best mean here to the claim; then each claim's note."""
    claims = variant_claims(a, "claim")
    beside = list(dict.fromkeys(m for c in claims for m in c.beside))
    rows, notes = _claim_rows(a, claims, beside, source=False)
    if not rows:
        return ""
    budget = _epochs(a, list(dict.fromkeys(c.task for c in claims)))
    head = (f"Measured here: {_measured_here(a)}{f'; {budget}' if budget else ''}. The articles' figures come from "
            f"their own training (its budget in \"claimed with\"); a design row exists for every stem → trunk this "
            f"grid trained.")
    elsewhere = _checked_elsewhere(a, claims)
    if elsewhere:
        head += " " + elsewhere
    headers = (["task", "metric", "claimed with", "design here", "claimed", "best STL", "mean ± std",
                "best MTL", "mean ± std"] + [f"{side} {m}" for m in beside for side in ("STL", "MTL")]
               + ["best here − claimed"])
    return "\n\n".join([head, md_table(headers, rows, left=4), *notes.values()])


def literature_section(a: Analysis) -> str:
    """Published figures of this grid's setting (claims of kind ``literature``) beside the best STL
    and MTL group of each design here, then the published findings in words; empty when the
    records' variants declare neither."""
    claims = variant_claims(a, "literature")
    beside = list(dict.fromkeys(m for c in claims for m in c.beside))
    rows, notes = _claim_rows(a, claims, beside, source=True)
    findings = variant_findings(a)
    out = []
    if rows:
        out.append(f"Published figures for this setting, beside the best STL and the best MTL group of each design "
                   f"here ({_measured_here(a)}). Each source trained its own model for its own budget (the "
                   f"\"published with\" column): the gap places this grid's numbers among them; it does not test "
                   f"multi-task learning.")
        headers = (["source", "task", "metric", "published with", "design here", "published", "best STL",
                    "mean ± std", "best MTL", "mean ± std"]
                   + [f"{side} {m}" for m in beside for side in ("STL", "MTL")] + ["best here − published"])
        out += [md_table(headers, rows, left=5), *notes.values()]
    if findings:
        out.append("What earlier studies found when tasks were trained together:\n\n"
                   + "\n".join(f"- {_source(f)}: {md_cell(f.text)}." for f in findings))
    return "\n\n".join(out)
