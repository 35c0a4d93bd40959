"""Formatting helpers shared by the README's sections: numbers, ± spreads, markdown tables."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from .stats import ok


def fmt_num(x: float | None, digits: int = 4) -> str:
    return f"{x:,.{digits}f}" if ok(x) else "—"


def fmt_pm(mean: float, spread: float, digits: int = 4, sign: bool = False) -> str:
    """``0.8662 ± 0.0031``; the mean alone when the spread is unknown (one seed)."""
    if not ok(mean):
        return "—"
    m = f"{mean:{'+' if sign else ''}.{digits}f}"
    return f"{m} ± {spread:.{digits}f}" if ok(spread) else m


def fmt_pct(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}%" if ok(x) else "—"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×" if ok(x) else "—"


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def bold(s: str) -> str:
    return f"**{s}**"


def md_cell(s: Any) -> str:
    """Text that cannot break a markdown table: no newlines, pipes escaped."""
    return " ".join(str(s).split()).replace("|", "\\|")


def collapsible(title: str, body: str) -> str:
    """A block GitHub shows folded, ``title`` on its one visible line (markdown inside needs the blank lines)."""
    return f"<details><summary>{title}</summary>\n\n{body}\n\n</details>"


FOLD_ROWS = 12   # a table longer than this is folded (its section's heading and note stay visible)


def folded_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """``md_table``, folded when it has more than ``FOLD_ROWS`` rows."""
    table = md_table(headers, rows, left)
    return collapsible(f"The table ({len(rows)} rows)", table) if len(rows) > FOLD_ROWS else table


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub table: the first ``left`` columns left-aligned, numbers right-aligned."""
    align = ["left"] * left + ["right"] * (len(headers) - left)
    return tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=True, colalign=align)


def shared_settings(names: Sequence[str]) -> list[str]:
    """The ``key=value`` parts every one of the labels carries, e.g. ``train.lr=0.004``."""
    parts = [{p.strip() for p in re.findall(r"[^(),]+=[^(),]+", n)} for n in names]
    return sorted(set.intersection(*parts)) if parts else []


def short_names(names: Sequence[str]) -> tuple[list[str], str]:
    """The names without the prefix every one of them shares up to a '-' (the grid's, e.g. ``tagging-``), and
    without a ``key=value`` that every one of them carries (``shared_settings``: say it once elsewhere); and
    that prefix."""
    prefix = os.path.commonprefix(list(names)) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind("-") + 1] if "-" in prefix else ""
    common = shared_settings(names)
    out = []
    for n in names:
        n = n[len(prefix):]
        for c in common:
            n = n.replace(f", {c}", "").replace(f"{c}, ", "").replace(f" ({c})", "")
        out.append(n)
    return out, prefix
