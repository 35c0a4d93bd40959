"""The verdict as a curve: Δ vs STL at the same label budget, along the budget, and the crossover sentence."""

from __future__ import annotations

import math

import pytest

from lepton_bench import report
from lepton_bench.report.budget import Point, budget_tasks, crossover, curves, pct
from lepton_bench.report.stats import diff_ci
from lepton_bench.results import load

from .test_report import make_record, write_grid

T4 = 2.7764451051977987   # Student-t 97.5% quantile, 4 degrees of freedom (from tables)

STL = {0.05: [0.60, 0.61, 0.62], 0.1: [0.70, 0.71, 0.72], 1.0: [0.80, 0.81, 0.82]}
AUX = {0.05: [0.65, 0.66, 0.67], 0.1: [0.73, 0.74, 0.75], 1.0: [0.80, 0.81, 0.82]}   # helps up to 10%
EW = {0.05: [0.58, 0.59, 0.60], 0.1: [0.70, 0.71, 0.72], 1.0: [0.75, 0.76, 0.77]}    # hurts at 100%


def at(rec: dict, fraction: float) -> dict:
    rec["config"]["tasks"]["conll2003"]["train_fraction"] = fraction
    rec["run_id"] += f"-f{fraction:g}"
    rec["data"] = {t: {"sizes": {"train": 1000}} for t in rec["tasks"]}
    return rec


def budget_records() -> list[dict]:
    recs = []
    for f, vals in STL.items():
        recs += [at(make_record("stl-conll2003", s, {"conll2003": v}), f) for s, v in enumerate(vals)]
    for s, v in enumerate([0.93, 0.94, 0.95]):
        recs.append(make_record("stl-conll2003_pos", s, {"conll2003_pos": v}))
    for f in STL:
        recs += [at(make_record("ner-aux-pos", s, {"conll2003": v, "conll2003_pos": 0.94}, weighting="static",
                                auxiliary=("conll2003_pos",)), f) for s, v in enumerate(AUX[f])]
        recs += [at(make_record("hard-ew", s, {"conll2003": v, "conll2003_pos": 0.94}), f)
                 for s, v in enumerate(EW[f])]
    return recs


def test_welch_ci_of_a_difference_by_hand():
    diff, half = diff_ci([0.65, 0.66, 0.67], [0.60, 0.61, 0.62])
    # s^2 = 1e-4 on both sides, n = 3: se = sqrt(2e-4 / 3), Welch's df = 4
    assert diff == pytest.approx(0.05) and half == pytest.approx(T4 * math.sqrt(2e-4 / 3))
    assert math.isnan(diff_ci([0.6], [0.5, 0.7])[1])


def test_each_variant_is_compared_with_the_stl_at_its_own_budget(tmp_path):
    a = report.analyse("scarce", budget_records())
    assert budget_tasks(a) == ["conll2003"]
    lines = curves(a, "conll2003")
    assert set(lines) == {"ner-aux-pos", "hard-ew"}
    aux = {p.share: p for p in lines["ner-aux-pos"]}
    assert sorted(aux) == [0.05, 0.1, 1.0]
    for f, p in aux.items():   # its STL is the one at the same budget
        assert p.stl.config["tasks.conll2003.train_fraction"] == f
        assert p.delta == pytest.approx((sum(AUX[f]) - sum(STL[f])) / sum(STL[f]) * 100)
    half = T4 * math.sqrt(2e-4 / 3) / 0.61 * 100
    assert aux[0.05].low == pytest.approx(aux[0.05].delta - half) and aux[0.05].significant
    assert not aux[1.0].significant


def test_the_crossover_sentence_by_budget():
    a = report.analyse("scarce", budget_records())
    lines = curves(a, "conll2003")
    assert crossover("conll2003", "ner-aux-pos", lines["ner-aux-pos"]) == (
        "ner-aux-pos helps conll2003 significantly up to 10% of its labels (+8.20% at 5%), not beyond (100%).")
    ew = crossover("conll2003", "hard-ew", lines["hard-ew"])
    assert ew.startswith("hard-ew does not help conll2003 significantly at any budget (best +0.00% at 10%")
    assert ew.endswith(", p 1); it hurts significantly at 100% (-6.17% at 100%).")

    def pt(share, delta, p):
        return Point(share, None, None, delta, delta - 1, delta + 1, p, 5)

    gaps = [pt(0.02, 3.0, 0.01), pt(0.05, 1.0, 0.3), pt(0.1, 2.0, 0.02), pt(1.0, 0.1, 0.9)]
    assert crossover("ner", "x", gaps) == ("x helps ner significantly at 2% and 10% of its labels (+3.00% at 2%), "
                                           "not at 5% and 100%.")
    everywhere = [pt(0.02, 3.0, 0.01), pt(1.0, 1.0, 0.01)]
    assert crossover("ner", "x", everywhere).endswith("up to 100% of its labels (+3.00% at 2%), at every budget tried.")
    assert pct(0.025) == "2.5%" and pct(1.0) == "100%"


def test_the_report_opens_with_the_curve_its_table_and_plot(tmp_path):
    folder = write_grid(tmp_path, budget_records(), "scarce")
    path = report.write_report(folder, tmp_path / "out")
    text = path.read_text()
    first = text.split("## Setting")[0]
    assert "**Label budget**: ner-aux-pos helps conll2003 significantly up to 10% of its labels" in first
    assert "## Δ against the label budget" in first and "![budget curve](budget_curve.png)" in first
    assert "5% of labels |" in first and "**+8.20% [" in first
    assert (tmp_path / "out" / "budget_curve.png").stat().st_size > 10_000
    # group labels name the budget in words, not as a config key
    assert "hard-ew (conll2003 labels 5%)" in text and "train_fraction=0.05" not in text
    again = report.write_report(folder, tmp_path / "out").read_text()
    assert again == text


def test_a_report_without_a_budget_has_no_budget_section(tmp_path):
    recs = [r for r in budget_records() if r["config"]["tasks"].get("conll2003", {}).get("train_fraction", 1) == 1]
    text = report.write_report(write_grid(tmp_path, recs, "full"), tmp_path / "out").read_text()
    assert "label budget" not in text.lower() and not (tmp_path / "out" / "budget_curve.png").exists()


def test_results_load_has_a_fraction_column(tmp_path):
    df = load(write_grid(tmp_path, budget_records(), "scarce"))
    ner = df[df["task"] == "conll2003"]
    assert sorted(ner["tasks.conll2003.train_fraction"].unique()) == [0.05, 0.1, 1.0]
    assert sorted(ner["label_fraction"].unique()) == [0.05, 0.1, 1.0]
    assert set(df[df["task"] == "conll2003_pos"]["label_fraction"]) == {1.0}
