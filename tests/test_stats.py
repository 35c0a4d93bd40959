"""The report's comparison statistics against cases worked by hand: dominance, the non-dominated set,
hypervolume, Holm's correction and mean rank."""

from __future__ import annotations

import math

import pytest

from lepton_bench.report.stats import dominates, holm, hypervolume, mean_rank, nondominated


def test_dominance_needs_at_least_as_good_everywhere_and_better_somewhere():
    assert dominates((0.9, 0.8), (0.9, 0.7))
    assert not dominates((0.9, 0.8), (0.9, 0.8))       # equal: neither dominates
    assert not dominates((0.95, 0.7), (0.9, 0.8))      # a trade-off
    assert dominates((1, 1, 1), (1, 0, 1))


def test_nondominated_keeps_trade_offs_and_drops_the_beaten():
    points = [(0.9, 0.7), (0.8, 0.8), (0.85, 0.75), (0.8, 0.7), (0.7, 0.9), (0.8, 0.8)]
    # (0.8, 0.7) is beaten by every other; the duplicates (0.8, 0.8) beat neither each other
    assert nondominated(points) == [0, 1, 2, 4, 5]
    assert nondominated([(0.5, 0.5, 0.5), (0.6, 0.5, 0.5)]) == [1]


def test_hypervolume_by_hand():
    # 2-D staircase over ref (0, 0): slabs y in (0,1] width 3, (1,2] width 2, (2,3] width 1 -> 6
    assert hypervolume([(3, 1), (1, 3), (2, 2)], (0, 0)) == pytest.approx(6.0)
    # a dominated point adds nothing; a point not above the reference adds nothing
    assert hypervolume([(3, 1), (1, 3), (2, 2), (1, 1), (5, -1)], (0, 0)) == pytest.approx(6.0)
    # reference moved to (0.5, 0.5): boxes 2.5 x 0.5, 0.5 x 2.5, 1.5 x 1.5 -> 1.25 + 1.25 + 2.25 - overlaps
    # slabs: y in (0.5,1]: width 2.5 -> 1.25; (1,2]: 1.5 -> 1.5; (2,3]: 0.5 -> 0.5; total 3.25
    assert hypervolume([(3, 1), (1, 3), (2, 2)], (0.5, 0.5)) == pytest.approx(3.25)
    # 3-D: three 1x1x2-type boxes: 2 + 2 + 2 - 3 pairwise overlaps of 1 + the triple overlap 1 = 4
    assert hypervolume([(2, 1, 1), (1, 2, 1), (1, 1, 2)], (0, 0, 0)) == pytest.approx(4.0)
    assert hypervolume([(1, 2, 3)], (0, 0, 0)) == pytest.approx(6.0)
    assert hypervolume([], (0, 0)) == 0.0


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 of m = 3 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> made non-decreasing: 0.06
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])     # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])            # one comparison: unchanged
    assert holm([]) == []


def test_mean_rank_by_hand():
    values = {"A": {"t1": 0.9, "t2": 0.5}, "B": {"t1": 0.8, "t2": 0.7}, "C": {"t1": 0.9, "t2": 0.6}}
    # t1: A and C tie for 1-2 -> 1.5 each, B 3; t2: B 1, C 2, A 3
    assert mean_rank(values) == pytest.approx({"A": 2.25, "B": 2.0, "C": 1.75})
    # a missing score: ranked among those that have one, averaged over its own criteria
    ranks = mean_rank({"A": {"t1": 0.9}, "B": {"t1": 0.8, "t2": 0.7}, "C": {"t2": 0.9}})
    assert ranks == pytest.approx({"A": 1.0, "B": 2.0, "C": 1.0})
