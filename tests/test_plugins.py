"""Plugins: entry points and --plugin modules add registry entries that then run like any other."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap

import pytest

from lepton_bench.cli import main
from lepton_bench.errors import ConfigError
from lepton_bench.plugins import ENTRY_POINT_GROUP, load_plugins
from lepton_bench.variants import VARIANTS
from lepton_bench.weighting import WEIGHTINGS

from .conftest import TINY


def example_installed() -> bool:
    return any(ep.value == "lepton_bench_example_plugin"
               for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def test_example_plugin_is_registered_when_installed():
    # The README's test step installs it; CI then proves that a plugin's variant trains.
    assert example_installed(), "install the example plugin first: pip install -e examples/plugin"
    assert "hard-inverse_loss" in VARIANTS and "inverse_loss" in WEIGHTINGS


def test_example_weighting_equalises_weighted_losses():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent.parent / "examples" / "plugin"))
    try:
        load_plugins(["lepton_bench_example_plugin"])
    finally:
        sys.path.pop(0)
    import torch

    w = WEIGHTINGS.get("inverse_loss")(["a", "b"])
    L = {"a": torch.tensor(1.0), "b": torch.tensor(3.0)}
    # w = 2 * (1/L) / sum(1/L) = [1.5, 0.5]: each weighted loss is 1.5
    assert w.combine(L).item() == pytest.approx(1.5 * 1 + 0.5 * 3)


def test_plugin_flag_registers_a_variant_that_runs(tmp_path, monkeypatch, data_dir, capsys):
    (tmp_path / "my_plugin.py").write_text(textwrap.dedent("""
        from lepton_bench.variants import Variant, register_variant
        register_variant(Variant("hard-ew-deep-test", "hard", "ew", overrides={"model.depth": 2},
                                 help="test plugin variant"))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--plugin", "my_plugin", "list", "variants", "*deep-test"]) == 0
    assert "test plugin variant" in capsys.readouterr().out
    sets = [a for o in TINY for a in ("--set", o)]
    assert main(["--plugin", "my_plugin", "run", "--variant", "hard-ew-deep-test", "--tasks", "imdb",
                 "--data-dir", str(data_dir), "--steps", "2", "--limit-eval", "16", "--no-progress",
                 "--out", str(tmp_path / "res"), *sets]) == 0


def test_a_missing_plugin_is_a_clear_error(capsys):
    assert main(["--plugin", "no_such_plugin_mod", "list"]) == 2
    assert "--plugin no_such_plugin_mod: cannot import it" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        load_plugins(["no_such_plugin_mod"])
