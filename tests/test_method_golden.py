"""Every core method trains exactly as it did before the methods/ refactor: the per-step losses and task
weights, the validation and test metrics and the run id of a short real-slice run, compared bit for bit
with the numbers recorded by the code before it (``tests/data/method_golden.json``).

Regenerate only on purpose (a method's behaviour changed by design, and the note says so):
``LEPTON_BENCH_GOLDEN=write python -m pytest tests/test_method_golden.py``.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest

from lepton_bench.run.train import run
from lepton_bench.variants import make_config

from .conftest import TINY

GOLDEN = Path(__file__).parent / "data" / "method_golden.json"
TAGGING = ("conll2003", "conll2003_pos")   # one input group: every method runs, feature-based ones too
CASES = {   # case -> (weighting, tasks, overrides)
    **{w: (w, TAGGING, ()) for w in (
        "aligned_mtl", "auto_lambda", "cagrad", "config", "cosmos", "cr_mogm", "db_mtl", "dualproj", "dwa", "ew",
        "excess_mtl", "fairgrad", "famo", "gls", "graddrop", "gradnorm", "gradvac", "imtl", "imtl_g", "ldc_mtl", "mgda",
        "moco", "modo", "nash_mtl", "pbi", "pcd", "pcgrad", "rlw", "sdmgrad", "static", "stch", "upgrad", "uw")},
    "mgda-features": ("mgda", TAGGING, ("weighting_args.jacobian=features",)),
    "static-weights": ("static", TAGGING, ('weighting_args.static={"conll2003": 2.0}',)),
    "graddrop-two-groups": ("graddrop", ("imdb", "conll2003"), ()),
    "nash_mtl-own": ("nash_mtl", TAGGING, ("weighting_args.task_grads=own",)),
    "graddrop-elementwise": ("graddrop", TAGGING, ("weighting_args.graddrop_form=elementwise",)),
}


def measure(case: str, data_dir: Path) -> dict:
    weighting, tasks, extra = CASES[case]
    cfg = make_config(f"hard-{weighting}", list(tasks), overrides=[*TINY, "train.steps=4", *extra],
                      device="cpu", data_dir=str(data_dir), limit_eval=24)
    rec = run(cfg)
    return {"run_id": rec["run_id"], "train_loss": rec["curves"]["train_loss"],
            "metrics": {t: {"val": m["val"], "test": m["test"]} for t, m in rec["metrics"].items()}}


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_method_trains_bit_for_bit_as_before(case, data_dir, golden):
    got = json.loads(json.dumps(measure(case, data_dir)))   # as the JSON file holds it
    if os.environ.get("LEPTON_BENCH_GOLDEN") == "write":
        GOLDEN.parent.mkdir(exist_ok=True)
        stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        GOLDEN.write_text(json.dumps({**stored, case: got, "#machine": machine()}, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden numbers written")
    assert case in golden, f"no golden numbers for {case}: write them (see the module docstring)"
    if golden.get("#machine") == machine():
        assert got == golden[case]   # bit for bit
    else:   # another CPU's kernels round differently: equal to float32 rounding
        assert got["run_id"] == golden[case]["run_id"]
        assert close(got, golden[case])


def close(a, b, rel: float = 1e-4) -> bool:
    """Equal structure, equal strings, numbers equal to ``rel``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-6
    return a == b


def machine() -> str:
    """The CPU the numbers came from (kernels differ between instruction sets, so do the last bits)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    import torch
    return f"{cpu} | torch {torch.__version__}"
