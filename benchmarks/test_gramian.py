"""The step of every Gramian-based gradient method by its two paths, each ÷ the hard-EW step:

* per task: one backward of each task's loss through the shared parameters, the Jacobian's rows
  (``weighting_args.autogram=false``, the default);
* autogram: torchjd's engine accumulates J J^T module by module in one batched backward, then one
  backward of the weighted losses (``weighting_args.autogram=true``; ``lepton_bench/methods/autogram.py``).

On two settings: the ``tagging`` group (NER + POS + chunking on one BiLSTM encoder and one MLP layer,
as the ``tagging`` grid) and the default three datasets (CIFAR-10, IMDB, CoNLL-2003 NER: three input
groups through one shared trunk). Each figure is the median of rounds taken in turn (per task,
autogram, hard-EW), after warm-up; ``python benchmarks/table.py`` prints them as a table.
"""

from __future__ import annotations

import json

import pytest

from lepton_bench.methods import WEIGHTINGS, resolve_args
from lepton_bench.run.train import prepare
from lepton_bench.testing import TINY_RUN
from lepton_bench.variants import TAGGING, TAGGING_MODEL, make_config

from .conftest import DATA, DEVICE, Steps
from .test_groups import interleaved

ROUNDS, WARMUP = 5, 2
SETTINGS = {"tagging": (list(TAGGING), [f"{k}={json.dumps(v)}" for k, v in TAGGING_MODEL.items()]),
            "three": (None, [])}


def takes_gramian(name: str) -> bool:
    import torch

    cls = WEIGHTINGS.get(name)
    if not hasattr(cls, "takes_gramian"):
        return False
    try:
        method = cls(["a", "b"], resolve_args(name, {}), seed=0).to(torch.device("cpu"))
    except Exception:   # noqa: BLE001 - a method that cannot even be built on a toy is not one of these
        return False
    return method.takes_gramian


GRAMIAN_METHODS = [n for n in WEIGHTINGS.list() if takes_gramian(n)]


def setup(method: str, setting: str, autogram: bool | None = None, tiny: bool = False, **limits):
    tasks, overrides = SETTINGS[setting]
    if tiny:
        overrides = [*overrides, *TINY_RUN]
    if autogram is not None:
        overrides = [*overrides, f"weighting_args.autogram={str(autogram).lower()}"]
    return prepare(make_config(f"hard-{method}", tasks, overrides=overrides, device=DEVICE, data_dir=str(DATA),
                               **limits))


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("method", GRAMIAN_METHODS)
def test_gramian_method_step_by_task_rows_and_by_autogram(benchmark, method, setting):
    benchmark.group = f"gramian methods: {setting}"
    benchmark.extra_info.update({"method": method, "setting": setting})
    if not benchmark.enabled:   # a plain pytest (CI): one autogram step on a slice, untimed
        steps = Steps(setup(method, setting, True, tiny=True, limit_train=64, limit_eval=16))
        benchmark.pedantic(steps, rounds=1)
        assert steps.step == 1
        return
    per_task, autogram, ew = setup(method, setting, False), setup(method, setting, True), setup("ew", setting)
    steps = Steps(autogram)
    benchmark.pedantic(steps, rounds=3, warmup_rounds=1)
    rows, gram, base = interleaved([Steps(s) for s in (per_task, autogram, ew)], ew.device, ROUNDS, WARMUP)
    benchmark.extra_info.update({"per_task_ms": rows * 1e3, "autogram_ms": gram * 1e3, "ew_ms": base * 1e3,
                                 "per_task_vs_ew": rows / base, "autogram_vs_ew": gram / base})
