"""The canvas every report plot draws on: Agg without pyplot (no global state, no GUI backend), and a save
that writes the same bytes for the same figure."""

from __future__ import annotations

from pathlib import Path

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, without pyplot (no global state, no GUI backend)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> None:
    # No version string or hash salt varies between runs, so the same records give the same bytes.
    with rc_context({"svg.hashsalt": "lepton_bench"}):
        fig.savefig(path, dpi=DPI, metadata={"Software": None})
