"""Reports: turn a grid's ``runs.jsonl`` into ``reports/<grid>/README.md`` with PNG plots.

The README holds, in order:

1. a summary in words, generated from the numbers: which multi-task (MTL) variants beat their
   matched single-task (STL) baselines on which tasks (and whether significantly), their Δm and
   training-cost ratio, and whether an adaptive weighting beats the best static-weight point of its
   design and architecture;
2. the setting: runs, seeds, budget, limits, environment and date (the latest ``finished_at``);
3. per task, one row per group: every test metric as mean ± std over seeds, n, the 95% CI of
   the primary metric and its relative Δ vs STL, marked ``*`` when Welch's t-test gives p < 0.05;
4. overall, one row per group: Δm (Maninis et al. 2019) with its 95% CI over seeds, mean rank over
   tasks (the Nash-MTL/FAMO convention), and cost (training time, FLOPs per step, peak memory,
   parameters, inference time) with ratios to the matched STL models together;
4b. with search axes (``tuning``): every sweep point of every variant with its validation and test
   score, the point chosen on validation marked — every other table shows only the chosen points;
5. the standing baselines (``baselines``): each method against equal weights, RLW and the
   static-weight front of its design, architecture and main tasks (place, hypervolume, Δm
   differences with Holm-corrected p-values);
6. the published claims and literature figures the grid's variants declare, beside the best STL and
   MTL results here, and their findings in words;
7. the failed runs, which every statistic leaves out;
8. plots: Δm vs training cost, per-task primary metric, validation curves, throughput and memory.

A group is the runs of one configuration: the whole config but ``seed`` and the runtime fields, so
different configurations are never averaged (``groups``). Each MTL group is compared, task by task,
with an STL group (architecture ``single``) of the same design (stem → trunk × depth).

Every metric is higher-is-better and in [0, 1]. Δm is computed per seed of an MTL group against
the STL means over seeds: the mean over tasks of the mean over that task's test metrics of
(M_mtl − M_stl) / M_stl × 100, so every task weighs the same whatever its number of metrics.

A group's auxiliary tasks (its config's ``auxiliary``) are in the per-task tables, marked ``(aux)``
with their Δ vs STL, but out of Δm, the summary's verdict and the claims; its cost ratios still
cover every task it trains. Tasks of one input group share an encoder pass: their per-task
inference times are shares of it, so their sum is the one pass that the ratios set against the STL
models' passes.

Nothing here imports torch: a report is fast and runs wherever the records are. The output is a
pure function of the records (no clock, sorted everything), so regenerating it changes no byte.

Modules: ``stats`` (numbers), ``records`` (reading), ``groups`` (configurations, labels, STL
matching), ``analysis`` (the tables' statistics), ``tuning`` (sweep points), ``baselines`` (the standing
baselines),
``format``/``markdown``/``claims`` (the README's
text), ``plots`` (the PNGs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import LeptonError
from .analysis import Analysis, analyse, overall_stats, task_metrics, task_order, task_stats
from .claims import claims_section, variant_claims
from .groups import Group, design_of, identity, make_groups, stl_references
from .markdown import readme, summary
from .plots import PLOT_FILES, write_plots
from .records import load_records, locate, run_cost
from .stats import ALPHA, delta_m, mean_ci, pareto_front, ratio, relative_delta, significant, welch_p

__all__ = [
    "ALPHA", "PLOT_FILES", "Analysis", "Group", "analyse", "claims_section", "delta_m", "design_of", "identity",
    "load_records", "locate", "make_groups", "mean_ci", "overall_stats", "pareto_front", "ratio", "readme",
    "relative_delta", "run_cost", "significant", "stl_references", "summary", "task_metrics", "task_order",
    "task_stats", "variant_claims", "welch_p", "write_plots", "write_report",
]


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees half a README."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be read
    os.replace(tmp, path)


def contrast_analyses(grid: str, root: Path) -> dict[str, Analysis]:
    """The analyses of the grids a registered grid declares as its contrast, from their folders beside its
    own (``root/<grid>``); a grid with no records there yet is left out."""
    # imported here: the report reads records, and needs the presets only for this
    from ..grid.presets import GRIDS

    if grid not in GRIDS:
        return {}
    out = {}
    for other in GRIDS.get(grid).contrast:
        try:
            _, path = locate(root / other)
            out[other] = analyse(other, load_records(path))
        except LeptonError:
            continue
    return out


def write_report(results: Path, out: Path | None = None) -> Path:
    """Write ``out/README.md`` (default ``reports/<grid>``) and its plots; returns the README's path."""
    grid, path = locate(Path(results))
    a = analyse(grid, load_records(path))
    a.contrast = contrast_analyses(grid, path.parent.parent)
    out = Path(out) if out is not None else Path("reports") / grid
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(a, out)
    readme_path = out / "README.md"
    _write_atomic(readme_path, readme(a, f"{grid}/{path.name}", plots))
    return readme_path
