"""The methods package: one module per method, the step a method asks for what it needs, the settings
each method declares (validated, recorded, hashed as before)."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest

from lepton_bench.cli import main
from lepton_bench.config import RunConfig, from_dict
from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, NoArgs, resolve_args
from lepton_bench.run import train
from lepton_bench.variants import make_config

from .conftest import TINY

ROOT = Path(__file__).resolve().parent.parent


def test_every_core_method_lives_in_a_module_of_its_own_name():
    """LibMTL's and torchjd's layout: methods/<method>.py (imtl.py holds the IMTL family: imtl_g and imtl)."""
    family = {"imtl_g": "imtl", "config": "con_fig"}
    for name in WEIGHTINGS.list():
        module = WEIGHTINGS.module(name)
        if module.startswith("lepton_bench."):
            assert module == f"lepton_bench.methods.{family.get(name, name)}", (name, module)


def test_the_training_step_names_no_method():
    """train_step and TrainStep hand every method the same step: no method's name, no method flag."""
    source = inspect.getsource(train.train_step) + inspect.getsource(train.TrainStep)
    names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)} | \
            {n.attr for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute)}
    for method in WEIGHTINGS.list():
        assert method not in names and method.replace("_", "") not in {n.lower() for n in names}, method
    assert not names & {"two_batches", "wants_features", "meta_batches", "needs_losses_after_step", "needs_every_task"}
    written = [ast.unparse(t) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Assign) for t in n.targets]
    assert not [w for w in written if "weighting." in w], written   # nothing is written onto the method


def test_a_setting_is_checked_against_the_methods_declaration():
    assert make_config("hard-famo", overrides=["weighting_args.famo_lr=0.01"]).weighting_args == {"famo_lr": 0.01}
    with pytest.raises(ConfigError, match=r"unknown setting weighting_args.famo_l of weighting famo; did you mean "
                                          r"famo_lr.*\(its settings: famo_lr, famo_decay\)"):
        make_config("hard-famo", overrides=["weighting_args.famo_l=0.01"])
    with pytest.raises(ConfigError, match=r"weighting ew \(it declares none\)"):
        make_config("hard-ew", overrides=["weighting_args.famo_lr=0.01"])
    with pytest.raises(ConfigError, match="bad value 'x' for weighting_args.cagrad_c"):
        make_config("hard-cagrad", overrides=["weighting_args.cagrad_c=x"])
    assert WEIGHTINGS.get("ew").Args is NoArgs
    assert resolve_args("cagrad", {}).jacobian == "params"   # the gradient methods' shared settings, inherited


def test_run_ids_hash_the_settings_as_the_flat_section_did():
    """The committed ids (tests/test_config.py recomputes every one) hash a section that held every method's
    fields: a setting of today's at its old default is that section's, so the id does not move."""
    plain = make_config("hard-famo")
    assert make_config("hard-famo", overrides=["weighting_args.famo_lr=0.025"]).config_hash() == plain.config_hash()
    assert make_config("hard-famo", overrides=["weighting_args.famo_lr=0.05"]).config_hash() != plain.config_hash()
    mgda = make_config("hard-mgda", overrides=["weighting_args.jacobian=params"])   # an added field at its default
    assert mgda.config_hash() == make_config("hard-mgda").config_hash()
    old = {**RunConfig().to_dict(), "weighting": "famo",
           "weighting_args": {"famo_lr": 0.025, "famo_decay": 0.001, "dwa_window": 50, "temperature": 3.0}}
    cfg = from_dict(old)   # a record of the flat section: only what was off its old default survives
    assert cfg.weighting_args == {} and cfg.sampler_temperature == 3.0


def test_a_plugin_weighting_declares_its_own_setting_and_its_record_holds_it(data_dir, tmp_path, capsys):
    """The example plugin's inverse_loss declares ``tau``: set from the command line, it runs and is recorded;
    an unknown key names the valid one."""
    pytest.importorskip("lepton_bench_example_plugin")
    out = tmp_path / "runs"
    args = ["run", "--variant", "hard-inverse_loss", "--tasks", "imdb", "conll2003", "--device", "cpu",
            "--data-dir", str(data_dir), "--out", str(out), "--no-progress", "--limit-eval", "24",
            *[a for o in [*TINY, "train.steps=2"] for a in ("--set", o)]]
    assert main([*args, "--set", "weighting_args.tau=0.5"]) == 0
    (record,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert record["config"]["weighting_args"] == {"tau": 0.5} and record["status"] == "ok"
    capsys.readouterr()
    assert main([*args, "--set", "weighting_args.temperature=0.5"]) == 2
    assert "unknown setting weighting_args.temperature of weighting inverse_loss (its settings: tau)" in \
        capsys.readouterr().err
