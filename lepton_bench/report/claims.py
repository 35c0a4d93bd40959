"""Published figures beside what a grid measured: the claims the grid's variants declare.

A variant carries its claims (``lepton_bench.variants.Variant.claims``): the report sets each, per
design trained on its task, beside the best STL and the best MTL group by the claim's metric, with
the other metrics the claim names (``beside``) of those same groups, and prints each claim's note.
Only groups that train the task as a main task count: an auxiliary task's metric is no claim.
"""

from __future__ import annotations

from typing import Any

from .analysis import Analysis
from .format import fmt_pm, md_cell, md_table, plural
from .records import get
from .stats import NAN, ok


def variant_claims(a: Analysis) -> list[Any]:
    """The claims of the variants the records name (unknown ones skipped, identical ones once), in the
    report's task order."""
    from ..variants import VARIANTS  # here: the report's import stays light

    claims: list[Any] = []
    for name in sorted({r["variant"] for r in a.records if r.get("variant")}):
        if name in VARIANTS:
            claims += [c for c in VARIANTS.get(name).claims if c not in claims]
    order = {t: i for i, t in enumerate(a.tasks)}
    return sorted(claims, key=lambda c: order.get(c.task, len(order)))


def _task_name(task: str) -> str:
    """How people write a task's name (``CoNLL-2003``): the first word of its help."""
    from ..tasks import TASKS

    return TASKS.get(task).help.split()[0].rstrip(":") if task in TASKS else task


def claims_section(a: Analysis) -> str:
    """The claimed figures beside what this grid measured, per design: its best STL and its best MTL
    group on that task (by the claimed metric), mean ± std over seeds, the ``beside`` metrics of those
    two groups, and the gap of the best mean here to the claim; then each claim's note."""
    claims = variant_claims(a)
    beside = list(dict.fromkeys(m for c in claims for m in c.beside))
    rows, notes = [], {}   # note -> its line, each note once
    for c in claims:
        df = a.per_task.get(c.task)
        if df is None or df.empty or f"{c.metric}:mean" not in df:
            continue
        df = df[~df["aux"]]   # an auxiliary task's metric is no claim of its variant's
        for design, part in df.groupby("design", sort=False):
            cells = [c.task, c.metric, md_cell(c.setting), md_cell(design), f"{c.value:.3f}"]
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
    if not rows:
        return ""
    steps = sorted({get(r.get("config") or {}, "train", "steps") for r in a.ok} - {None})
    seeds = sorted({r["seed"] for r in a.ok})
    devices = sorted({f"{(r.get('env') or {}).get('device', '?')} ({(r.get('env') or {}).get('device_name') or '?'})"
                      for r in a.ok})
    head = (f"Measured here: {', '.join(map(str, steps))} training steps, {plural(len(seeds), 'seed')}, on "
            f"{'; '.join(devices)}, test split (`limit_eval` as in Setting). The articles' figures come from their "
            f"own, longer training; a design row exists for every stem → trunk this grid trained. The BERT figure "
            f"needs a pretrained `hf:` stem (README: Pretrained encoders), which only a machine with Hub access runs.")
    headers = (["task", "metric", "claimed with", "design here", "claimed", "best STL", "mean ± std",
                "best MTL", "mean ± std"] + [f"{side} {m}" for m in beside for side in ("STL", "MTL")]
               + ["best here − claimed"])
    return "\n\n".join([head, md_table(headers, rows, left=4), *notes.values()])
