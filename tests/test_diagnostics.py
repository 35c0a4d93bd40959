"""Gradient conflict and task affinity (diagnostics.py): known answers on two quadratic tasks built to
conflict or to agree, AdamW's look-ahead step by hand, and a real run whose training the measurements
leave bit for bit as it was."""

from __future__ import annotations

import math

import pytest
import torch

from lepton_bench.run.diagnostics import measure, sgd_step, to_host
from lepton_bench.run.train import run
from lepton_bench.variants import make_config

from .conftest import TINY


def quadratic(theta, targets):
    """L_t = |theta - c_t|^2 / 2: the gradient of task t is theta - c_t."""
    return lambda: {t: 0.5 * ((theta - c) ** 2).sum() for t, c in targets.items()}


def sgd(lr):
    """The paper's look-ahead: eta g."""
    return lambda grads: [lr * g for g in grads]


def test_conflicting_tasks_have_negative_cosine_and_hurt_each_other():
    """theta = 0, a = [1, 0], b = [-1, .1]: g_a = [-1, 0], g_b = [1, -.1]; cos = -1 / sqrt(1.01) = -.995.
    a's step (eta .1): theta' = -.1 g_a = [.1, 0]; L_b: (1.1^2 + .01) / 2 = .61 against .505 before, so
    Z(a -> b) = 1 - .61 / .505 = -.2079; L_a: .81 / 2 = .405 against .5: Z(a -> a) = .19."""
    theta = torch.zeros(2, requires_grad=True)
    out = measure(quadratic(theta, {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([-1.0, 0.1])}), [theta],
                  sgd(0.1))
    assert out["tasks"] == ["a", "b"]
    torch.testing.assert_close(out["grad_norm"], torch.tensor([1.0, math.sqrt(1.01)]))
    assert out["cosine"][0, 1].item() == pytest.approx(-1 / math.sqrt(1.01), rel=1e-5)
    assert out["affinity"][0, 1].item() == pytest.approx(1 - 0.61 / 0.505, rel=1e-4)
    assert out["affinity"][0, 0].item() == pytest.approx(0.19, rel=1e-4)
    # b's step: theta' = -.1 g_b = [-.1, .01]; L_a = (1.21 + .0001) / 2 = .60505 against .5: Z(b -> a) = -.2101
    assert out["affinity"][1, 0].item() == pytest.approx(1 - 0.60505 / 0.5, rel=1e-4)
    assert torch.equal(theta.detach(), torch.zeros(2))   # put back
    assert theta.grad is None                           # .grad untouched


def test_aligned_tasks_have_positive_cosine_and_help_each_other():
    """a = [1, 0], b = [2, 1]: g_a = [-1, 0], g_b = [-2, -1]; cos = 2 / sqrt(5) = .894. a's step: theta' =
    [.1, 0]; L_b = (1.9^2 + 1) / 2 = 2.305 against 2.5: Z(a -> b) = .078."""
    theta = torch.zeros(2, requires_grad=True)
    out = measure(quadratic(theta, {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([2.0, 1.0])}), [theta],
                  sgd(0.1))
    assert out["cosine"][0, 1].item() == pytest.approx(2 / math.sqrt(5), rel=1e-5)
    assert out["affinity"][0, 1].item() == pytest.approx(1 - 2.305 / 2.5, rel=1e-4)
    assert (out["affinity"] > 0).all()
    point = to_host(out, step=7)
    assert point["step"] == 7 and point["cosine"] == {"a": {"b": pytest.approx(0.894, abs=1e-3)},
                                                      "b": {"a": pytest.approx(0.894, abs=1e-3)}}
    assert set(point["affinity"]["a"]) == {"a", "b"} and point["grad_norm"]["b"] == pytest.approx(math.sqrt(5))


def test_the_lookahead_step_is_each_groups_learning_rate_times_the_gradient():
    decay, plain = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.AdamW([{"params": [decay], "lr": 0.01}, {"params": [plain], "lr": 0.5}])
    steps = sgd_step(opt, [decay, plain], [torch.tensor([1.0, -2.0]), torch.tensor(3.0)])
    torch.testing.assert_close(steps[0], torch.tensor([0.01, -0.02]))
    torch.testing.assert_close(steps[1], torch.tensor(1.5))


def tiny(data_dir, every, variant="hard-ew", steps=4):
    return make_config(variant, overrides=[*TINY, f"train.steps={steps}", f"train.diagnose_every={every}"],
                       device="cpu", data_dir=str(data_dir), limit_eval=24)


def test_measuring_leaves_the_training_bit_for_bit_as_it_was(data_dir):
    """The default three tasks (a conv stem with BatchNorm, dropout on): with measurements every 2 steps the
    losses, weights and metrics are those of the run without any; the record carries them, host values at
    the measured steps, and their time apart from training."""
    plain, measured = run(tiny(data_dir, 0)), run(tiny(data_dir, 2))
    assert measured["run_id"] == plain["run_id"]   # how often it measures is not what it trains
    assert measured["curves"]["train_loss"] == plain["curves"]["train_loss"]
    assert measured["metrics"] == plain["metrics"]
    assert "diagnostics" not in plain["curves"] and plain["cost"]["diagnose_seconds"] == 0
    points = measured["curves"]["diagnostics"]
    assert [p["step"] for p in points] == [2, 4]
    tasks = measured["tasks"]
    for p in points:
        assert set(p["grad_norm"]) == set(tasks) and all(v > 0 for v in p["grad_norm"].values())
        assert all(-1 <= v <= 1 for row in p["cosine"].values() for v in row.values())
        assert all(set(row) == set(tasks) for row in p["affinity"].values())
        assert all(math.isfinite(v) for row in p["affinity"].values() for v in row.values())
    assert measured["cost"]["diagnose_seconds"] > 0


def test_nothing_is_measured_without_two_tasks_or_shared_parameters(data_dir):
    assert "diagnostics" not in run(tiny(data_dir, 1, "stl-imdb", steps=2))["curves"]
    assert "diagnostics" not in run(tiny(data_dir, 1, "hard-ew-round_robin", steps=2))["curves"]
