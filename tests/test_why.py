"""The report's "Why" section (report/why.py) from records with diagnostics: means and conflict shares by
hand, TAG's grouping by hand, sentences tied to the grid's Δ, the plots; and results.load / report --csv."""

from __future__ import annotations

import numpy as np
import pytest

from lepton_bench import report
from lepton_bench.cli import main
from lepton_bench.report.why import partitions, tag_grouping, tag_score, why_of
from lepton_bench.results import load

from .test_report import grid_records, make_record, write_grid

TASKS = ["cifar10", "imdb"]


def point(step, cos, aff_ci, aff_ic, norms=(1.0, 2.0)):
    """A diagnostics point of two tasks: cosine, Z(cifar10 -> imdb), Z(imdb -> cifar10)."""
    return {"step": step, "grad_norm": dict(zip(TASKS, norms, strict=True)),
            "cosine": {"cifar10": {"imdb": cos}, "imdb": {"cifar10": cos}},
            "affinity": {"cifar10": {"cifar10": 0.1, "imdb": aff_ci}, "imdb": {"cifar10": aff_ic, "imdb": 0.2}}}


def with_diagnostics(rec, points):
    rec["curves"]["diagnostics"] = points
    rec["config"]["train"]["diagnose_every"] = 10
    return rec


def records():
    """grid_records (hard-ew: cifar10 ahead of STL by ~11%, imdb flat) with hard-ew's runs measured: seed 0
    cosines -0.2 and 0.4, seed 1 and 2: -0.1, 0.3. Mean cosine (-.2 + .4 - .1 + .3 - .1 + .3) / 6 = .1,
    conflict 3 of 6 steps; Z(cifar10 -> imdb) = -.05 everywhere, Z(imdb -> cifar10) .02 / .04."""
    recs = grid_records()
    for r in recs:
        if r["variant"] == "hard-ew" and r["status"] == "ok":
            first = -0.2 if r["seed"] == 0 else -0.1
            second = 0.4 if r["seed"] == 0 else 0.3
            with_diagnostics(r, [point(10, first, -0.05, 0.02), point(20, second, -0.05, 0.04)])
    return recs


def test_group_means_and_conflict_share_by_hand():
    a = report.analyse("mini", records())
    w = why_of(next(g for g in a.groups if g.name == "hard-ew"))
    assert w.tasks == TASKS and w.points == 6 and w.steps == [10, 20] and w.every == 10
    assert w.cosine[0, 1] == pytest.approx(0.1) and w.cosine[0, 0] == 1
    assert w.conflict[0, 1] == pytest.approx(0.5)
    assert w.affinity[0, 1] == pytest.approx(-0.05) and w.affinity[1, 0] == pytest.approx(0.03)
    np.testing.assert_allclose(w.cosine_curve[:, 0, 1], [(-0.2 - 0.1 - 0.1) / 3, (0.4 + 0.3 + 0.3) / 3])
    np.testing.assert_allclose(w.norm, [1.0, 2.0])
    assert why_of(next(g for g in a.groups if g.name == "hard-uw")) is None   # no measurements


def test_partitions_and_tags_grouping_by_hand():
    assert len(list(partitions(["a", "b", "c"]))) == 5 and len(list(partitions(list("abcd")))) == 15
    # Z: a and b help each other (+.3, +.1); c hurts both and is hurt by both
    tasks = ["a", "b", "c"]
    z = np.array([[0.0, 0.3, -0.2], [0.1, 0.0, -0.1], [-0.4, -0.5, 0.0]])
    # {a, b} | {c}: onto a: .1 (from b), onto b: .3, c alone: 0 -> .4
    assert tag_score(tasks, z, [["a", "b"], ["c"]]) == pytest.approx(0.4)
    # all together: onto a (.1 - .4) / 2 = -.15, onto b (.3 - .5) / 2 = -.1, onto c (-.2 - .1) / 2 = -.15
    assert tag_score(tasks, z, [tasks]) == pytest.approx(-0.4)
    assert tag_grouping(tasks, z) == [["a", "b"], ["c"]]
    assert tag_grouping(tasks, np.abs(z)) == [tasks]   # every affinity positive: one group
    assert tag_grouping(tasks, -np.abs(z)) == [["a"], ["b"], ["c"]]


def test_report_section_words_and_plots(tmp_path):
    folder = write_grid(tmp_path, records())
    text = report.write_report(folder, tmp_path / "out").read_text()
    why = text.split("## Why: gradient conflict and task affinity")[1].split("\n## ")[0]
    assert "every 10 steps" in why
    assert "| hard-ew | 6 | cifar10·imdb +0.10 (50%) | {cifar10}, {imdb} |" in why
    # cifar10: (.91 - .81) / .81 = 12.3% ahead of STL; imdb's step onto it +.03; imdb: cifar10's onto it -.05
    assert "cifar10 is 12.3% ahead of STL under hard-ew, significant" in why
    assert "the affinity onto it is imdb's +0.03: every other task's step lowers its loss" in why
    assert "conflict with imdb's on 50% of measured steps (mean cosine +0.10)" in why
    assert "the affinity onto it is cifar10's -0.05: no other task's step lowers its loss" in why
    # total affinity apart 0 beats together (.03 - .05): TAG sets them apart; cifar10 gains significantly
    assert "TAG would train {cifar10}, {imdb}" in why and "disagrees on cifar10" in why
    assert "agrees on imdb (set apart; Δ +1.16%, not significant)" in why
    assert "![why heatmaps](why_heatmaps.png)" in why and "![why curves](why_curves.png)" in why
    for png in ("why_heatmaps.png", "why_curves.png"):
        assert (tmp_path / "out" / png).stat().st_size > 10_000
    again = report.write_report(folder, tmp_path / "again").read_text()
    assert again == text and (tmp_path / "again" / "why_heatmaps.png").read_bytes() == \
        (tmp_path / "out" / "why_heatmaps.png").read_bytes()


def test_tasks_that_barely_interact_are_said_so(tmp_path):
    """Cosines within ±0.05 and affinities onto each task under a tenth of its own step's: the sentences say
    the gradients are nearly orthogonal and that the affinities support no grouping, instead of reading signs."""
    recs = grid_records()
    for r in recs:
        if r["variant"] == "hard-ew":   # own affinities .1 (cifar10) and .2 (imdb); across: -.005, +.004
            with_diagnostics(r, [point(10, -0.03, -0.005, 0.004), point(20, 0.01, -0.005, 0.004)])
    why = report.write_report(write_grid(tmp_path, recs), tmp_path / "out").read_text().split("## Why")[1]
    assert "its gradients are nearly orthogonal to the others' (mean cosine -0.01 with imdb" in why
    assert "each under a tenth of its own step's effect (+0.1): the tasks barely interact" in why
    assert "too close to zero to support a grouping" in why
    assert "conflict with" not in why.split("|\n\n")[1]   # the sentences, not the table


def test_no_section_without_measurements(tmp_path):
    text = report.write_report(write_grid(tmp_path, grid_records()), tmp_path / "out").read_text()
    assert "## Why" not in text and not (tmp_path / "out" / "why_heatmaps.png").exists()


def test_load_gives_one_row_per_run_and_task(tmp_path):
    recs = grid_records() + [make_record("hard-ew", 0, {"cifar10": 0.95, "imdb": 0.9}, tag="ffffffffffffffff")]
    recs[-1]["config"]["train"]["lr"] = 0.004   # a second configuration of hard-ew: lr varies
    df = load(write_grid(tmp_path, recs))
    ok = [r for r in recs if r["status"] == "ok"]
    assert len(df) == sum(len(r["tasks"]) for r in recs)
    assert list(df.columns[:6]) == ["run_id", "variant", "seed", "status", "error", "task"]
    assert "train.lr" in df.columns and "train.steps" not in df.columns   # only what differs
    row = df[(df.variant == "hard-ew") & (df.seed == 1) & (df.task == "imdb") & (df["train.lr"] == 0.002)].iloc[0]
    assert row["test.accuracy"] == 0.86 and row["test_primary"] == 0.86 and row["primary"] == "accuracy"
    assert row["train_seconds"] == 51.0 and row["params"] == 700_000 and row["samples_per_s"] == 50.0
    assert (df.packed == 1).all()
    assert (df.status == "failed").sum() == 2 and df[df.status == "failed"]["error"].notna().all()
    assert len({r["run_id"] for r in ok}) + 1 == df.run_id.nunique()


def test_load_reads_the_committed_results():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results"
    for grid in ("quick", "tagging"):
        df = load(root / grid)
        assert len(df) > 100 and df["test_primary"].notna().all() and set(df.status) == {"ok"}
    assert {"train.lr", "model.dropout"} <= set(load(root / "tagging").columns)


def test_report_csv(tmp_path, capsys):
    folder = write_grid(tmp_path, grid_records())
    assert main(["report", str(folder), "--out", str(tmp_path / "out"), "--csv"]) == 0
    csv = tmp_path / "out" / "runs.csv"
    assert "table written to" in capsys.readouterr().out
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("run_id,variant,seed,status,error,task") and len(lines) == 1 + 16


def test_the_setting_says_how_far_the_budget_is_from_convergence(tmp_path):
    """make_record's validation curves reach v/2 at step 10 and v at step 20: hard-ew's cifar10 (mean .91)
    gains .455 in 10 steps, 455 points per 100 steps; flattened curves (the same value twice) gain 0."""
    text = report.write_report(write_grid(tmp_path, grid_records()), tmp_path / "out").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Convergence"))
    assert "cifar10 +455.00 (hard-ew)" in line and "still rising at the end of the budget" in line
    flat = grid_records()
    for r in flat:
        for p in (r.get("curves") or {}).get("val", []):
            p.update({t: {k: 2 * v for k, v in m.items()} if p["step"] == 10 else m
                      for t, m in p.items() if t != "step"})
    text = report.write_report(write_grid(tmp_path / "flat", flat), tmp_path / "flat_out").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Convergence"))
    assert "cifar10 +0.00 (hard-ew)" in line and "Every curve has levelled off" in line


def test_the_heatmaps_show_equal_weights_and_say_how_far_the_others_are_from_it(tmp_path):
    """hard-uw measured too, cosine +0.5 and Z(cifar10 -> imdb) -0.01 on every step: it differs from hard-ew's
    by |0.5 - 0.1| = 0.4 in the cosine and |-0.01 + 0.05| = 0.04 in an affinity, which the section says."""
    from lepton_bench.report.why import differences, measured, references

    recs = records()
    for r in recs:
        if r["variant"] == "hard-uw" and r["status"] == "ok":
            with_diagnostics(r, [point(10, 0.5, -0.01, 0.03), point(20, 0.5, -0.01, 0.03)])
    a = report.analyse("mini", recs)
    whys = measured(a)
    assert [w.group.name for w in references(whys)] == ["hard-ew"]
    ((w, ref, cos, aff),) = differences(whys)
    assert (w.group.name, ref.group.name) == ("hard-uw", "hard-ew")
    assert cos == pytest.approx(0.4) and aff == pytest.approx(0.04)
    text = report.write_report(write_grid(tmp_path, recs), tmp_path / "out").read_text()
    assert ("The other measured variant differs from hard-ew by at most 0.40 in a pair's mean cosine (hard-uw) "
            "and 0.04 in an affinity (hard-uw)") in text


def test_a_contrast_grid_at_another_budget_sets_its_cosines_beside_these(tmp_path):
    """The standard grid declares quick (the same tasks at 200 steps) its contrast: its Why section sets the
    equal-weights group's mean cosine there beside here, pair by pair, and TAG's grouping; its first screen
    names the difference (the budget), not "another design"."""
    here = records()
    there = records()
    for r in there:
        r["config"]["train"]["steps"] = 200
        for p in r["curves"].get("diagnostics") or []:
            p["cosine"] = {"cifar10": {"imdb": -0.3}, "imdb": {"cifar10": -0.3}}
    for r in here:
        r["config"]["train"]["steps"] = 2000
    folder = write_grid(tmp_path, here, name="standard")
    write_grid(tmp_path, there, name="quick")
    text = report.write_report(folder, tmp_path / "out").read_text()
    why = text.split("## Why: gradient conflict and task affinity")[1].split("\n## ")[0]
    line = next(p for p in why.split("\n\n") if p.startswith("**Against `quick`**"))
    assert line.startswith("**Against `quick`** (200 steps against 2,000: [its report](../quick/README.md))")
    assert "`hard-ew`: cifar10·imdb -0.30 → +0.10; TAG's grouping {cifar10}, {imdb} → {cifar10}, {imdb}" in line
    first = text.split("## Setting")[0]
    assert "**Against `quick`** (the same tasks, 200 steps against 2,000:" in first
