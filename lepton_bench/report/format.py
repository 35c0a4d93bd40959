"""Formatting helpers shared by the README's sections: numbers, ± spreads, markdown tables."""

from __future__ import annotations

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


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub table: the first ``left`` columns left-aligned, numbers right-aligned."""
    align = ["left"] * left + ["right"] * (len(headers) - left)
    return tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=True, colalign=align)
