"""Grids: the presets (``presets``: ``Grid``, ``GRIDS``, ``register_grid``), the plan of a grid's runs
(``plan``), the runner and its workers (``runner``), the executors that place the runs (``executors``:
local, packed, warm, submitit, Ray) and the selection of sweep points on validation (``selection``).
This ``__init__`` holds the presets' registry only (no torch), for plugins: ``from lepton_bench.grid
import Grid, register_grid``."""

from .presets import GRIDS, Grid, register_grid

__all__ = ["GRIDS", "Grid", "register_grid"]
