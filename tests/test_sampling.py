"""Task samplers, and the refusal of gradient methods without every task every step."""

import numpy as np
import pytest

from lepton_bench.errors import ConfigError
from lepton_bench.sampling import SAMPLERS
from lepton_bench.train import run
from lepton_bench.variants import make_config

TASKS = ["small", "big"]
SIZES = {"small": 100, "big": 900}


def sampler(name, steps=100, **kw):
    return SAMPLERS.get(name)(TASKS, SIZES, steps, seed=0, **kw)


def test_all_and_round_robin():
    assert sampler("all").tasks_at(7) == TASKS
    rr = sampler("round_robin")
    assert [rr.tasks_at(s)[0] for s in range(1, 5)] == ["small", "big", "small", "big"]


def test_proportional_and_temperature_probabilities():
    np.testing.assert_allclose(sampler("proportional").probabilities(1), [0.1, 0.9])
    np.testing.assert_allclose(sampler("temperature", temperature=2.0).probabilities(1), [10 / 40, 30 / 40])
    draws = [sampler("proportional").tasks_at(1) for _ in range(1)]
    assert draws[0][0] in TASKS


def test_proportional_draw_frequencies():
    s = sampler("proportional")
    big = sum(s.tasks_at(i)[0] == "big" for i in range(1, 2001)) / 2000
    assert abs(big - 0.9) < 0.03


def test_annealed_goes_from_proportional_to_near_uniform():
    s = sampler("annealed", steps=11)
    np.testing.assert_allclose(s.probabilities(1), [0.1, 0.9])
    p = np.array([100, 900]) ** 0.2
    np.testing.assert_allclose(s.probabilities(11), p / p.sum())


def test_seeded_draws_repeat():
    a, b = sampler("temperature"), sampler("temperature")
    assert [a.tasks_at(i) for i in range(1, 50)] == [b.tasks_at(i) for i in range(1, 50)]


@pytest.mark.parametrize("weighting", ["pcgrad", "dwa", "famo"])
def test_methods_needing_every_task_refuse_one_task_samplers(weighting, tmp_path):
    from lepton_bench.config import set_dotted

    cfg = make_config("hard-ew-round_robin", device="cpu", data_dir=str(tmp_path))
    set_dotted(cfg, "weighting", weighting)
    with pytest.raises(ConfigError, match=f"weighting {weighting} needs every task's loss at every step"):
        run(cfg)
