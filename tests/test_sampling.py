"""Task samplers, and the refusal of gradient methods without every task every step."""

import numpy as np
import pytest

from lepton_bench.config import set_dotted
from lepton_bench.errors import ConfigError
from lepton_bench.run.sampling import SAMPLERS, Sampler
from lepton_bench.run.train import run
from lepton_bench.variants import make_config

from .conftest import TINY

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
    np.testing.assert_allclose(sampler("temperature", temperature=1.0).probabilities(1), [0.1, 0.9])
    # the draws follow those probabilities: one task a step, "small" a quarter of the time at tau 2
    s = sampler("temperature", temperature=2.0)
    draws = [s.tasks_at(i) for i in range(1, 4001)]
    assert {len(d) for d in draws} == {1}
    assert abs(sum(d == ["small"] for d in draws) / 4000 - 0.25) < 0.03


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
    cfg = make_config("hard-ew-round_robin", device="cpu", data_dir=str(tmp_path))
    set_dotted(cfg, "weighting", weighting)
    with pytest.raises(ConfigError, match=f"weighting {weighting} needs every task's loss at every step"):
        run(cfg)


class HighestLoss(Sampler):
    """One task a step: the one with the highest last logged loss (each task once first)."""

    instances: list = []   # every one built (train.prepare builds one per run)

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.last: dict[str, float] = {}
        self.observed: list[tuple[int, dict[str, float]]] = []
        self.drawn: list[tuple[int, str, int]] = []   # (step, task, observe calls before the draw)
        HighestLoss.instances.append(self)

    def observe(self, step, losses):
        self.observed.append((step, dict(losses)))
        self.last.update(losses)

    def tasks_at(self, step):
        unseen = [t for t in self.tasks if t not in self.last]
        pick = unseen[0] if unseen else max(self.tasks, key=self.last.__getitem__)
        self.drawn.append((step, pick, len(self.observed)))
        return [pick]


@pytest.fixture
def highest_loss():
    if "highest_loss_test" not in SAMPLERS:
        SAMPLERS.register("highest_loss_test", HighestLoss)
    HighestLoss.instances.clear()
    return "highest_loss_test"


def test_base_sampler_ignores_observed_losses():
    s = sampler("round_robin")
    s.observe(1, {"small": 3.0})   # the default hook: accepted, changes nothing
    assert [s.tasks_at(i)[0] for i in range(1, 3)] == ["small", "big"]


@pytest.mark.parametrize("log_every", [1, 2])
def test_a_sampler_reads_the_logged_losses_before_the_next_draw(log_every, data_dir, highest_loss):
    """train.run hands the sampler the losses it logs, at each log point, before the next step."""
    cfg = make_config("hard-ew-round_robin", ["imdb", "conll2003"], overrides=[
        *TINY, "train.steps=3", f"train.log_every={log_every}"], device="cpu", data_dir=str(data_dir), limit_eval=24)
    set_dotted(cfg, "sampler", highest_loss)
    rec = run(cfg)
    (s,) = HighestLoss.instances
    steps = rec["cost"]["steps"]
    assert steps == 6
    # called at every logged point, with exactly the losses the record logs there
    logged = [(p["step"], {t: p[t] for t in cfg.tasks if t in p}) for p in rec["curves"]["train_loss"]]
    # the record keeps the curve at float32 precision (results.compact_curves)
    assert [st for st, _ in s.observed] == [st for st, _ in logged]
    assert [lo for _, lo in s.observed] == [pytest.approx(lo, rel=1e-6) for _, lo in logged]
    assert [st for st, _ in s.observed] == list(range(log_every, steps + 1, log_every))
    # each draw saw every log point before it, and picked the highest last loss by then
    for step, task, calls in s.drawn:
        assert calls == (step - 1) // log_every
        last = {}
        for _, losses in (o for o in s.observed if o[0] < step):
            last.update(losses)
        unseen = [t for t in cfg.tasks if t not in last]
        assert task == (unseen[0] if unseen else max(cfg.tasks, key=last.__getitem__))
    assert {t for _, t, _ in s.drawn} == set(cfg.tasks)
