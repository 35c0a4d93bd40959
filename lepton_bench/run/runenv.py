"""What an executor tells a run about how it runs, read into the run's record: its packing (``--runs-per-device``)
and, in a warm worker, which of the worker's runs it is. Imports nothing of the project, so that measurement
(which reads it) and the executors (which set it) need not import each other."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

# The one variable through which the local executor tells a packed run so: JSON, see ``packing``. A run's
# record reads it into ``env["packed"]`` (``measure.environment``); a run alone has no such key.
PACKED_ENV = "LEPTON_BENCH_PACKED"


def packing(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """How this run was packed, as the executor set it (``{"runs_per_device", "slot", "slots", "device"}``;
    device: the run's ``CUDA_VISIBLE_DEVICES`` or "cpu"), or None for a run alone."""
    raw = (os.environ if environ is None else environ).get(PACKED_ENV)
    try:
        info = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None



# A warm worker's run: which of its runs this is, set by ``grid.serve`` before each run and read into the
# record's ``env["worker"]`` (``measure.environment``); None elsewhere.
_WARM_RUN: dict[str, Any] | None = None


def warm_run() -> dict[str, Any] | None:
    """``{"run": k}`` in a warm worker's k-th run (1: its first), else None."""
    return dict(_WARM_RUN) if _WARM_RUN else None


def set_warm_run(info: dict[str, Any] | None) -> None:
    global _WARM_RUN
    _WARM_RUN = info
