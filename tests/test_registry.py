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


def test_duplicate_name_is_refused():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", 2)


def test_project_registries_are_populated():
    from lepton_bench.models import ARCHITECTURES
    from lepton_bench.sampling import SAMPLERS
    from lepton_bench.tasks import TASKS
    from lepton_bench.variants import VARIANTS
    from lepton_bench.weighting import WEIGHTINGS

    assert set(TASKS) == {"cifar10", "imdb", "conll2003"}
    assert {"single", "hard"} <= set(ARCHITECTURES)
    assert "ew" in WEIGHTINGS and "all" in SAMPLERS
    assert {"stl-cifar10", "stl-imdb", "stl-conll2003", "hard-ew"} <= set(VARIANTS)
