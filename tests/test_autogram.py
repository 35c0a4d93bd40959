"""The autogram path (``weighting_args.autogram=true``: the Gramian by torchjd's engine, then one backward
of the weighted losses) gives every Gramian-based method the update of the per-task path, to float
tolerance, on real slices: one input group (a shared stem and trunk) and two (a trunk called twice)."""

from __future__ import annotations

import pytest
import torch

from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, resolve_args
from lepton_bench.methods.autogram import outermost_shared_modules
from lepton_bench.run.train import TrainStep, next_batches, prepare, run
from lepton_bench.variants import make_config

from .conftest import TINY


def method(name, **args):
    return WEIGHTINGS.get(name)(["a", "b"], resolve_args(name, args), seed=0).to(torch.device("cpu"))


def takes_gramian(name):
    try:
        return bool(getattr(method(name), "takes_gramian", False))
    except ConfigError:
        return False


GRAMIAN = [n for n in WEIGHTINGS.list() if takes_gramian(n)]
SETTINGS = {"one group": ["conll2003", "conll2003_pos"], "two groups": ["imdb", "conll2003"]}


def config(name, tasks, autogram, steps=3, extra=()):
    return make_config(f"hard-{name}", tasks, overrides=[*TINY, f"train.steps={steps}",
                                                         f"weighting_args.autogram={str(autogram).lower()}", *extra],
                       device="cpu", data_dir=str(pytest.data_dir), limit_train=64, limit_eval=16)


@pytest.fixture(autouse=True)
def _data(data_dir):
    pytest.data_dir = data_dir


def test_the_gramian_methods_are_torchjds_gramian_weightings():
    assert {"upgrad", "mgda", "pcgrad", "cagrad", "dualproj", "imtl_g", "aligned_mtl", "pcd"} <= set(GRAMIAN)
    assert not {"graddrop", "config", "nash_mtl", "excess_mtl", "moco", "db_mtl", "modo", "sdmgrad"} & set(GRAMIAN)


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("name", GRAMIAN)
def test_autogram_gives_the_per_task_update(name, setting):
    """The first step's gradients of every parameter, then three steps' losses (stateful methods too)."""
    tasks = SETTINGS[setting]
    grads = []
    for autogram in (False, True):
        s = prepare(config(name, tasks, autogram))
        s.opt.zero_grad(set_to_none=True)
        s.weighting.backward(TrainStep(s, next_batches(s, 1)))
        grads.append({n: p.grad for n, p in s.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-6, msg=f"{name}: {n}")
    rows, gram = (run(config(name, tasks, autogram)) for autogram in (False, True))
    assert gram["config"]["weighting_args"] == {"autogram": True}
    for a, b in zip(rows["curves"]["train_loss"], gram["curves"]["train_loss"], strict=True):
        for t in tasks:
            assert b[t] == pytest.approx(a[t], rel=1e-4), (name, t)


def test_autogram_is_refused_where_the_method_needs_more_than_the_gramian():
    for name in ("graddrop", "config", "nash_mtl", "moco"):
        with pytest.raises(ConfigError, match="needs the task gradients themselves"):
            method(name, autogram=True)
    with pytest.raises(ConfigError, match="jacobian=features"):
        method("mgda", autogram=True, jacobian="features")
    assert method("upgrad", autogram=True).needs.single_process   # each process's own Gramian otherwise


def test_autogram_hooks_the_outermost_called_modules_of_the_shared_parameters(data_dir):
    """A stem as a whole (a BiLSTM's packed sequences stay inside it), never a container (never called)."""
    tasks = SETTINGS["one group"]
    s = prepare(config("upgrad", tasks, True, extra=['model.stems={"conll2003": "bilstm", "conll2003_pos": "bilstm"}']))
    shared = s.model.parameter_split()[0]
    modules = outermost_shared_modules(s.model, shared)
    assert [type(m).__name__ for m in modules] == [type(s.model.stems[tasks[0]]).__name__, "Trunk"]
    assert {id(p) for m in modules for p in m.parameters()} == {id(p) for p in shared}
