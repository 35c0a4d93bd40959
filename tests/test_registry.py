import pytest

from lepton_bench.errors import ConfigError
from lepton_bench.registry import Registry


def test_register_get_list():
    reg = Registry("thing")

    @reg.register("alpha")
    def alpha():
        """First thing. More text."""

    reg.register("beta", object(), help="second thing")
    assert reg.get("alpha") is alpha
    assert reg.list() == ["alpha", "beta"]
    assert reg.list("a*") == ["alpha"]
    assert reg.help("alpha") == "First thing. More text."
    assert reg.help("beta") == "second thing"
    assert "alpha" in reg and len(reg) == 2


def test_unknown_name_suggests_close_matches():
    reg = Registry("variant")
    for n in ("hard-ew", "stl-imdb", "stl-cifar10"):
        reg.register(n, n)
    with pytest.raises(ConfigError, match=r"unknown variant 'hard-eww'; did you mean hard-ew\?"):
        reg.get("hard-eww")
    with pytest.raises(ConfigError, match="known: hard-ew, stl-cifar10, stl-imdb"):
        reg.get("zzz")


def test_duplicate_name_is_refused_naming_who_registered_it_first():
    reg = Registry("thing")
    reg.register("a", 1)
    reg.register("a", 1)   # the same object again (a module imported twice) is no conflict
    with pytest.raises(ConfigError, match=rf"thing 'a' is already registered by {__name__}; "):
        reg.register("a", 2)


def test_an_entry_is_credited_to_the_module_that_registers_it_through_a_helper():
    from lepton_bench.variants import VARIANTS

    assert VARIANTS.module("stl-imdb") == "lepton_bench.variants"   # register_variant at its top level
    assert VARIANTS.module("hard-ew") == "lepton_bench.methods.ew"   # derived, from where its weighting registers
    from lepton_bench.methods import WEIGHTINGS

    assert WEIGHTINGS.module("pcgrad") == "lepton_bench.methods.pcgrad"   # one module per method
    from lepton_bench.tasks import TASKS

    if "conll2003_pos_demo" in TASKS:   # the test plugin calls register_task at its top level
        assert TASKS.module("conll2003_pos_demo") == "tests.pos_demo_plugin"


def test_entries_without_help_get_a_description_not_a_class_docstring_or_signature():
    from dataclasses import dataclass

    from lepton_bench.variants import Variant

    reg = Registry("variant")
    reg.register("v", Variant("v", "hard", "uw"))   # a dataclass instance without help
    assert reg.help("v") == "architecture hard, weighting uw, sampler all"

    @dataclass
    class Undocumented:   # dataclasses write "Undocumented(x: int = 0)" as its __doc__
        x: int = 0

    class Documented:
        """What every instance of the class shares."""

    reg.register("cls", Undocumented)
    reg.register("obj", Documented())
    reg.register("own", Variant("own", "hard", help="its own help"))
    assert reg.help("cls") == "" and reg.help("obj") == "" and reg.help("own") == "its own help"


def test_total_counts_every_registry_and_failed_plugins_reach_unknown_names(monkeypatch):
    before = Registry.total()
    reg = Registry("thing")
    reg.register("a", 1)
    reg.register("b", 2)
    assert Registry.total() == before + 2
    monkeypatch.setattr(Registry, "plugin_failures", ["'x = x_mod' (x-dist)"])
    with pytest.raises(ConfigError) as e:
        reg.get("c")
    assert str(e.value) == "unknown thing 'c' (known: a, b); plugin 'x = x_mod' (x-dist) failed to load"


def test_project_registries_are_populated():
    from lepton_bench.methods import WEIGHTINGS
    from lepton_bench.models import ARCHITECTURES
    from lepton_bench.run.sampling import SAMPLERS
    from lepton_bench.tasks import TASKS
    from lepton_bench.variants import VARIANTS

    core = {n for n in TASKS if TASKS.module(n) == "lepton_bench.tasks"}   # plugins may add more
    assert {"cifar10", "imdb", "conll2003"} <= core
    assert {"single", "hard"} <= set(ARCHITECTURES)
    assert "ew" in WEIGHTINGS and "all" in SAMPLERS
    assert {"stl-cifar10", "stl-imdb", "stl-conll2003", "hard-ew"} <= set(VARIANTS)
