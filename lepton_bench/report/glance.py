"""The report's first screen: one sentence of verdict and one table of the variants that matter — the best of
each method family (equal weights, static weights, adaptive weightings, auxiliary tasks, each other
architecture), per main-task set and label budget — with Δm ± CI, each task's Δ vs STL and its significance,
the training-time and parameter ratios to the STL models, and where it stands against the static front.
"""

from __future__ import annotations

import pandas as pd

from .analysis import Analysis
from .budget import budget_tasks, label_share, pct
from .format import fmt_pct, fmt_ratio, md_table, shared_settings, short_names
from .stats import ok, significant

FAMILY_ORDER = ("equal weights", "static weights", "adaptive weighting", "auxiliary tasks")


def family(row: pd.Series, auxiliary: bool) -> str:
    """The method family a group belongs to, from its config alone (the report reads records, not methods)."""
    if auxiliary:
        return "auxiliary tasks"
    if row["architecture"] != "hard":
        return f"architecture {row['architecture']}"
    if row["weighting"] == "ew":
        return "equal weights"
    return "static weights" if row["static"] else "adaptive weighting"


def _front_place(row: pd.Series, static: pd.DataFrame) -> str:
    """``on`` the static front (a static point no other beats), ``behind`` it (a static point is as cheap or
    cheaper and as good or better), or ``beyond`` it; in training time ÷ STL and Δm."""
    pts = static[static["dm"].notna() & static["train_ratio"].notna()]
    if pts.empty or not (ok(row["dm"]) and ok(row["train_ratio"])):
        return "—"
    c, g = row["train_ratio"], row["dm"]
    beaten = any(c2 <= c and g2 >= g and (c2 < c or g2 > g) for c2, g2, n in
                 zip(pts["train_ratio"], pts["dm"], pts["name"], strict=True) if n != row["name"])
    if beaten:
        return "behind"
    return "on" if row["static"] else "beyond"


def glance_rows(a: Analysis) -> pd.DataFrame:
    """The best group (by Δm) of each family, per main-task set and budget of the budget tasks; EW's always."""
    df = a.overall[~a.overall["stl"] & a.overall["dm"].notna()].copy()
    if df.empty:
        return df
    groups = {g.name: g for g in a.groups}
    budgets = budget_tasks(a)
    df["family"] = [family(r, bool(groups[r["name"]].auxiliary)) for _, r in df.iterrows()]
    df["budget"] = [tuple(label_share(groups[n], t) for t in budgets) for n in df["name"]]
    picked = []
    for _, rows in df.groupby(["main", "budget"], sort=False):   # Δm of other main tasks, budgets: apart
        static = rows[rows["static"]]
        for _, members in rows.groupby("family", sort=False):
            best = members.sort_values(["dm", "name"], ascending=[False, True]).iloc[0].copy()
            best["front"] = _front_place(best, static)
            picked.append(best)
    out = pd.DataFrame(picked)
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    out["_f"] = [rank.get(f, len(rank)) for f in out["family"]]
    out["_b"] = [tuple(-x for x in b) for b in out["budget"]]
    out = out.sort_values(["n_main", "main", "_b", "_f", "dm"], ascending=[False, True, True, True, False])
    return out.drop(columns=["_f", "_b"]).reset_index(drop=True)


def _task_delta(a: Analysis, name: str, task: str) -> str:
    df = a.per_task.get(task)
    if df is None or df.empty:
        return ""
    row = df[df["name"] == name]
    if row.empty:
        return ""
    d, p = row["delta"].iloc[0], row["p"].iloc[0]
    if not ok(d):
        return "—"
    cell = fmt_pct(d) + ("*" if significant(p) else "")
    return f"({cell} aux)" if bool(row["aux"].iloc[0]) else cell


def wins(a: Analysis, name: str) -> list[str]:
    """'imdb (+1.20%, significant)' for each main task where a group's primary mean beats STL (an
    auxiliary task's Δ is in its table, never in the verdict)."""
    out = []
    for t in a.tasks:
        df = a.per_task[t]
        row = df[(df["name"] == name) & ~df["aux"]]
        if len(row) and ok(row["delta"].iloc[0]) and row["delta"].iloc[0] > 0:
            sig = ", significant" if significant(row["p"].iloc[0]) else ""
            out.append(f"{t} ({fmt_pct(row['delta'].iloc[0])}{sig})")
    return out


def verdict(a: Analysis, rows: pd.DataFrame) -> str:
    """One sentence: the best row (by Δm, of the largest main-task set), whether its Δm is clear of 0, its cost."""
    top = rows[rows["n_main"] == rows["n_main"].max()].sort_values("dm", ascending=False).iloc[0]
    clear = ok(top["dm_ci"]) and top["dm"] - top["dm_ci"] > 0
    below = ok(top["dm_ci"]) and top["dm"] + top["dm_ci"] < 0
    how = ("clear of zero" if clear else "below zero" if below else
           "within noise of zero" if ok(top["dm_ci"]) else "one seed")
    cost = f" at {fmt_ratio(top['train_ratio'])} the STL models' training time" if ok(top["train_ratio"]) else ""
    mtl = a.overall[~a.overall["stl"]]
    n_sig = sum(any("significant" in w for w in wins(a, n)) for n in mtl["name"])
    names, _ = short_names(list(rows["name"]))
    label = names[list(rows["name"]).index(top["name"])]
    return (f"**Verdict**: the best multi-task variant over {top['main'].replace('+', ', ')} is {label} "
            f"({top['family']}), Δm {fmt_pct(top['dm'])}{f' ± {top.dm_ci:.2f}' if ok(top['dm_ci']) else ''} "
            f"({how}){cost}; {n_sig} of {len(mtl)} multi-task variants beat their STL baseline significantly on "
            f"at least one task.")


def _answer(rows: pd.DataFrame) -> tuple[str, pd.Series]:
    """'helps', 'hurts' or 'is neutral' from the best row's Δm CI (of the largest main-task set), and that row."""
    top = rows[rows["n_main"] == rows["n_main"].max()].sort_values("dm", ascending=False).iloc[0]
    if not ok(top["dm_ci"]):
        return "is undecided (one seed)", top
    return ("helps" if top["dm"] - top["dm_ci"] > 0 else "hurts" if top["dm"] + top["dm_ci"] < 0 else
            "is neutral"), top


def _dm(r: pd.Series) -> str:
    return fmt_pct(r["dm"]) + (f" ± {r['dm_ci']:.2f}" if ok(r["dm_ci"]) else "")


def _ew(rows: pd.DataFrame) -> pd.Series | None:
    ew = rows[(rows["family"] == "equal weights") & (rows["n_main"] == rows["n_main"].max())]
    return ew.iloc[0] if len(ew) else None


def contrast_sentences(a: Analysis, rows: pd.DataFrame) -> list[str]:
    """One sentence per contrast grid (the same tasks, another design or budget): whether multi-task learning
    helps, hurts or is neutral here and there, by the best variant's Δm and equal weights' (the glance rows of each)."""
    out = []
    here, top = _answer(rows)
    ew = _ew(rows)
    for name, other in a.contrast.items():
        theirs = glance_rows(other) if other.overall is not None and other.mtl else pd.DataFrame()
        if theirs.empty:
            continue
        there, best = _answer(theirs)
        ew_there = _ew(theirs)
        ew_text = (f", equal weights {_dm(ew)} here against {_dm(ew_there)}" if ew is not None and ew_there is not None
                   else "")
        same = "as it does" if here == there else f"where it {there}"
        out.append(f"**Against `{name}`** (the same tasks, {a.differs_from(other)}: "
                   f"[its report](../{name}/README.md)): multi-task learning {here} here (best Δm {_dm(top)}), "
                   f"{same} in `{name}` (best Δm "
                   f"{_dm(best)}){ew_text}.")
    return out


def glance_section(a: Analysis) -> str:
    """The verdict sentence, what the labels leave out, and the table; '' when there is nothing to compare."""
    rows = glance_rows(a)
    if rows.empty:
        return ""
    names, prefix = short_names(list(rows["name"]))
    every = shared_settings(list(rows["name"]))
    budgets = budget_tasks(a)
    if budgets:   # the budget has a column of its own: out of the labels
        names = [_without_budget(n) for n in names]
    tasks = [t for t in a.tasks if any(t in m.split("+") for m in rows["tasks"])]
    headers = ["variant", "family", *(f"{t} labels" for t in budgets), "Δm ± 95% CI (over)",
               *(f"Δ {t}" for t in tasks), "time ÷ STL", "params ÷ STL", "static front"]
    body = []
    for name, (_, r) in zip(names, rows.iterrows(), strict=True):
        dm = fmt_pct(r["dm"]) + (f" ± {r['dm_ci']:.2f}" if ok(r["dm_ci"]) else "")
        over = "all" if r["main"] == r["tasks"] else r["main"].replace("+", ", ")
        body.append([name, r["family"], *(pct(s) for s in r["budget"]), f"{dm} ({over})",
                     *(_task_delta(a, r["name"], t) for t in tasks),
                     fmt_ratio(r["train_ratio"]), fmt_ratio(r["params_ratio"]), r["front"]])
    shared = ", ".join(f"`{s}`" for s in every)
    aux = " `(… aux)`: an auxiliary task, out of Δm." if (rows["main"] != rows["tasks"]).any() else ""
    note = ("The best of each method family (by Δm, the mean relative change over the main tasks vs their STL "
            "baselines; its 95% CI over seeds). Δ: each task's primary test metric vs its STL baseline, `*` where "
            f"Welch's t-test gives p < 0.05.{aux} Time and parameters: ÷ "
            "the STL models of the same tasks together. Static front: against the equal- and static-weight "
            "points in training time and Δm — `behind` (one is as cheap and as good or better), `on`, `beyond`.")
    if prefix or shared:
        note += (" Every label drops what all rows share: " + ", ".join(
            x for x in [f"the prefix `{prefix}`" if prefix else "", shared] if x) + ".")
    return "\n\n".join([verdict(a, rows), *contrast_sentences(a, rows), note, md_table(headers, body, left=2)])


def _without_budget(label: str) -> str:
    """``hard-ew (conll2003 labels 2%, train.lr=0.001)`` -> ``hard-ew (train.lr=0.001)``."""
    import re

    label = re.sub(r"[\w.-]+ labels [\d.]+%?(, )?", "", label)
    return label.replace(" ()", "").replace(", )", ")")
