"""GO4Align against numbers worked by hand from the authors' code (``GO4ALIGN.get_weighted_loss``), its
settings' checks, and one short real run."""

from __future__ import annotations

import math

import pytest
import torch

import lepton_bench.methods.go4align  # noqa: F401  (registers "go4align")
from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, resolve_args

from .conftest import short_real_run

LN2 = math.log(2)   # beta = ln 2 makes exp(-beta L) = 2^-L


def make(tasks, **cfg):
    return WEIGHTINGS.get("go4align")(list(tasks), resolve_args("go4align", cfg), seed=0).to(torch.device("cpu"))


def losses(tasks, *values):
    return {t: torch.tensor(float(v), requires_grad=True) for t, v in zip(tasks, values, strict=True)}


def test_three_tasks_two_groups():
    """L = (1, 2, 4), beta = ln 2, K = 2. P = 7 / L = (7, 3.5, 1.75); Q = (1/3)(1/2, 1/4, 1/16) renormalised
    = (8, 4, 1) / 13; gamma = P * Q = (56, 14, 1.75) / 13 = (4.308, 1.077, 0.135).

    K-means from any two of the three as initial centres ends at {a}, {b, c}: from (a, b) or (a, c), c (or b)
    joins the nearer b (or c), and the centres (4.308, 0.606) keep every task; from (b, c), a joins b, the centres
    (2.692, 0.135) move b to c (0.942 < 1.615), then as before. So omega = (56/13, 15.75/26, 15.75/26) and the
    loss 1 * 56/13 + (2 + 4) * 15.75/26 = 7.9423; d loss / d L_t = omega_{k(t)} (the weights detached)."""
    tasks = ["a", "b", "c"]
    for seed in range(6):   # every draw of initial centres
        w = WEIGHTINGS.get("go4align")(tasks, resolve_args("go4align", {"go4align_beta": LN2}), seed=seed)
        w.to(torch.device("cpu"))
        L = losses(tasks, 1, 2, 4)
        total = w.combine(L)
        assert total.item() == pytest.approx(56 / 13 + 6 * 15.75 / 26, rel=1e-6)
        total.backward()
        assert [L[t].grad.item() for t in tasks] == pytest.approx([56 / 13, 15.75 / 26, 15.75 / 26], rel=1e-6)
        assert w.groups[1] == w.groups[2] != w.groups[0]
        assert w.weights()["b"] == pytest.approx(15.75 / 26, rel=1e-6)


def test_one_group_is_the_mean_indicator_and_all_groups_the_indicators():
    """The same step: K = 1 gives every task mean(gamma) = 71.75 / 39 (their code's K = 1 branch); K = 3 = T
    gives each task its own indicator (the paper's "without grouping"); the paper's Eq. 5 (mean, not sum)
    divides gamma by T = 3."""
    tasks = ["a", "b", "c"]
    one = make(tasks, go4align_beta=LN2, go4align_groups=1)
    assert one.combine(losses(tasks, 1, 2, 4)).item() == pytest.approx(71.75 / 39 * 7, rel=1e-6)
    assert list(one.weights().values()) == pytest.approx([71.75 / 39] * 3, rel=1e-6)
    every = make(tasks, go4align_beta=LN2, go4align_groups=3)
    every.combine(losses(tasks, 1, 2, 4))
    assert list(every.weights().values()) == pytest.approx([56 / 13, 14 / 13, 1.75 / 13], rel=1e-6)
    paper = make(tasks, go4align_beta=LN2, go4align_groups=3, go4align_scale="mean")
    paper.combine(losses(tasks, 1, 2, 4))
    assert list(paper.weights().values()) == pytest.approx([56 / 39, 14 / 39, 1.75 / 39], rel=1e-6)


def test_the_smoothness_vector_accumulates_the_risks():
    """Two tasks, K = 2, beta = ln 2. Step 1, L = (1, 2): Q = (1/2, 1/4) renormalised = (2/3, 1/3). Step 2,
    L = (3, 1): Q = (2/3 * 1/8, 1/3 * 1/2) renormalised = (1/3, 2/3) (= 2^-(1+3), 2^-(2+1) normalised);
    P = 4 / L = (4/3, 4); gamma = omega = (4/9, 8/3); the loss 3 * 4/9 + 1 * 8/3 = 4."""
    tasks = ["a", "b"]
    w = make(tasks, go4align_beta=LN2)
    w.combine(losses(tasks, 1, 2))
    torch.testing.assert_close(w.q, torch.tensor([2 / 3, 1 / 3]))
    assert w.combine(losses(tasks, 3, 1)).item() == pytest.approx(4.0, rel=1e-6)
    torch.testing.assert_close(w.q, torch.tensor([1 / 3, 2 / 3]))
    assert list(w.weights().values()) == pytest.approx([4 / 9, 8 / 3], rel=1e-6)


def test_the_default_beta_is_their_trainers_and_equal_indicators_share_a_group():
    """Defaults: K = 2, beta = 1e-4. L = (1, 1): Q stays (1/2, 1/2), P = (2, 2), gamma = (1, 1): both tasks
    choose the first centre, the other cluster is empty and re-seeded; omega = (1, 1), the loss 2 (no NaN)."""
    tasks = ["a", "b"]
    w = make(tasks)
    assert (w.args.go4align_groups, w.args.go4align_beta, w.args.go4align_scale) == (2, 1e-4, "sum")
    assert w.combine(losses(tasks, 1, 1)).item() == pytest.approx(2.0)
    assert w.weights() == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    L = losses(tasks, 1, 3)   # beta 1e-4: Q ~ (1/2, 1/2) (1 + 1e-4 (3 - 1) / 2 ...), gamma ~ (2, 2/3)
    w.combine(L)
    q = torch.tensor([math.exp(-1e-4 * 2), math.exp(-1e-4 * 4)])
    q = q / q.sum()
    assert list(w.weights().values()) == pytest.approx((torch.tensor([4.0, 4 / 3]) * q).tolist(), rel=1e-6)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match=r"go4align_groups must be between 1 and the number of tasks \(2\), not 3"):
        make(["a", "b"], go4align_groups=3)
    with pytest.raises(ConfigError, match="go4align_groups must be between 1 and the number of tasks"):
        make(["a", "b"], go4align_groups=0)
    with pytest.raises(ConfigError, match="go4align_beta must be >= 0, not -1"):
        make(["a", "b"], go4align_beta=-1.0)
    with pytest.raises(ConfigError, match="go4align_scale must be sum or mean, not 'max'"):
        make(["a", "b"], go4align_scale="max")
    with pytest.raises(ConfigError, match="needs a loss of every task"):
        make(["a", "b"]).combine({"a": torch.tensor(1.0)})


def test_a_short_real_run(data_dir):
    for p in short_real_run("hard-go4align", data_dir):
        assert all(math.isfinite(v) and v > 0 for v in p["weights"].values())   # two tasks, K = 2: gamma itself
