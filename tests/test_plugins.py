"""Plugins: entry points and --plugin modules add registry entries that then run like any other."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap

import pytest

from lepton_bench.cli import main
from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS
from lepton_bench.plugins import ENTRY_POINT_GROUP, load_plugins
from lepton_bench.variants import VARIANTS

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


# ---------------------------------------------------------------- broken, empty and skipped plugins

def install(root, entry_points: dict[str, str], modules: dict[str, str], dist="lb-test-plugins"):
    """A distribution 'installed' on sys.path under ``root``: its dist-info declares ``entry_points``
    (name -> module) in group lepton_bench.plugins, beside the ``modules`` (name -> source)."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Plugin bookkeeping of this test only: what it tries and what fails is forgotten after it."""
    from lepton_bench import plugins
    from lepton_bench.registry import Registry

    monkeypatch.setattr(plugins, "_loaded", set(plugins._loaded))
    monkeypatch.setattr(Registry, "plugin_failures", [])
    monkeypatch.setenv(plugins.NO_PLUGINS_ENV, "")   # main may set it; restored (unset) afterwards


@pytest.fixture
def broken_installed(tmp_path, monkeypatch, fresh_plugins):
    root = install(tmp_path / "site", {"broken": "lb_test_broken_plugin"},
                   {"lb_test_broken_plugin": "raise RuntimeError('boom: the plugin is broken')"})
    monkeypatch.syspath_prepend(str(root))
    return root


def test_a_broken_installed_plugin_is_named_and_other_commands_still_work(broken_installed, capsys):
    assert main(["list", "variants", "hard-ew"]) == 0
    out, err = capsys.readouterr()
    assert "hard-ew" in out
    assert err.splitlines() == [
        "lepton-bench: warning: installed plugin 'broken = lb_test_broken_plugin' (lb-test-plugins) failed to "
        "load and is skipped (RuntimeError: boom: the plugin is broken); --no-plugins or "
        "LEPTON_BENCH_NO_PLUGINS=1 skips installed plugins"]
    # a name the registries lack may be the broken plugin's: the error says it failed (one line)
    assert main(["run", "--variant", "hard-broken"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown variant 'hard-broken'" in err
    assert err.rstrip().endswith("plugin 'broken = lb_test_broken_plugin' (lb-test-plugins) failed to load")


def test_no_plugins_skips_installed_plugins_here_and_in_child_processes(broken_installed, capsys):
    import os
    import subprocess

    from lepton_bench.plugins import NO_PLUGINS_ENV

    from .conftest import ROOT

    assert main(["--no-plugins", "list", "tasks"]) == 0
    assert capsys.readouterr().err == ""
    assert os.environ[NO_PLUGINS_ENV] == "1"   # what a grid's worker processes inherit
    # a child started with this environment (as the grid's executors start workers) skips them too;
    # without the variable it meets the broken plugin
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken_installed), str(ROOT)])}
    for unset, warned in (({}, False), ({NO_PLUGINS_ENV: ""}, True)):
        child = subprocess.run([sys.executable, "-m", "lepton_bench", "list", "grids"], cwd=ROOT,
                               env={**env, **unset}, capture_output=True, text=True)
        assert child.returncode == 0 and "smoke" in child.stdout
        assert ("lb_test_broken_plugin" in child.stderr) is warned, child.stderr


def test_no_plugins_still_loads_plugins_named_with_the_flag(broken_installed, tmp_path, monkeypatch, capsys):
    import warnings

    from lepton_bench.registry import Registry

    monkeypatch.setenv("LEPTON_BENCH_NO_PLUGINS", "1")
    (tmp_path / "lb_test_named_plugin.py").write_text(textwrap.dedent("""
        from lepton_bench.methods import WEIGHTINGS
        from lepton_bench.methods.ew import EqualWeighting
        WEIGHTINGS.register("ew-named-test", EqualWeighting)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_plugins() == []   # the variable alone: the broken installed plugin is not tried
    assert Registry.plugin_failures == []
    assert main(["--no-plugins", "--plugin", "lb_test_named_plugin", "list", "weightings", "ew-named*"]) == 0
    assert "ew-named-test" in capsys.readouterr().out


def test_a_plugin_that_registers_nothing_is_warned_about(tmp_path, monkeypatch, fresh_plugins, capsys):
    root = install(tmp_path / "site", {"empty": "lb_test_empty_installed"},
                   {"lb_test_empty_installed": "X = 1\n", "lb_test_empty_named": "Y = 2\n"})
    monkeypatch.syspath_prepend(str(root))
    assert main(["--plugin", "lb_test_empty_named", "list", "tasks"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "lepton-bench: warning: installed plugin 'empty = lb_test_empty_installed' (lb-test-plugins) "
        "registered nothing (no task, variant, weighting, ...)",
        "lepton-bench: warning: --plugin lb_test_empty_named registered nothing (no task, variant, "
        "weighting, ...); is it the module that registers them?"]


def test_a_duplicate_name_says_which_module_registered_it_first(tmp_path, monkeypatch, fresh_plugins, capsys):
    (tmp_path / "lb_test_dup_plugin.py").write_text(textwrap.dedent("""
        from lepton_bench.variants import Variant, register_variant
        register_variant(Variant("hard-ew", "hard", "uw", help="a clash"))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--plugin", "lb_test_dup_plugin", "list"]) == 2
    assert capsys.readouterr().err == (
        "lepton-bench: error: variant 'hard-ew' is already registered by lepton_bench.methods.ew; "
        "lb_test_dup_plugin cannot register it again (pick another name)\n")


def test_the_example_plugins_own_tests_pass_outside_this_suite(data_dir, tmp_path):
    """examples/plugin/tests use lepton_bench.testing as a plugin's repository would: run apart from this
    suite (its own pytest process, none of this suite's fixtures), on the real-data slices."""
    import os
    import subprocess

    from .conftest import ROOT

    pytest.importorskip("lepton_bench_example_plugin")
    env = {**os.environ, "LEPTON_BENCH_DATA": str(data_dir), "LEPTON_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT / "examples" / "plugin", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout and "skipped" not in proc.stdout   # the real-data tests ran too
