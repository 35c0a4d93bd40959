"""Search axes: every variant gets the same sweep points; a point is part of a run's identity; the
budget-saving protocol picks each variant's point on validation only and runs the remaining seeds there."""

from __future__ import annotations

import json

import pytest

from lepton_bench.cli import main
from lepton_bench.errors import ConfigError
from lepton_bench.grid.plan import parse_sweep, plan, simplex_weights
from lepton_bench.grid.presets import GRIDS, Grid, register_grid
from lepton_bench.grid.selection import choose, point_scores, validation_score
from lepton_bench.results import SCHEMA_VERSION, read_records, runs_path

VARIANTS = ("stl-conll2003", "hard-ew")


@pytest.fixture
def tuned_grid():
    """A grid of 2 variants, 2 learning rates, 3 seeds, tuned on 1 seed (the budget-saving protocol)."""
    name = "tuned-test"
    if name not in GRIDS:
        register_grid(Grid(name, VARIANTS, seeds=3, sweep={"train.lr": (1e-3, 2e-3)}, tune_seeds=1,
                           overrides={"train.steps": 2}))
    return name


def fake_record(run, val: float, test: float) -> dict:
    """A finished record of a planned run whose main tasks score ``val`` on validation, ``test`` on test."""
    cfg = run.config.to_dict()
    metrics = {t: {"val": {"entity_f1": val, "accuracy": val}, "test": {"entity_f1": test, "accuracy": test},
                   "primary": "entity_f1" if t == "conll2003" else "accuracy"} for t in cfg["tasks"]}
    return {"schema_version": SCHEMA_VERSION, "run_id": run.run_id, "status": "ok", "variant": cfg["variant"],
            "tasks": list(cfg["tasks"]), "seed": cfg["seed"], "config": cfg, "metrics": metrics,
            "finished_at": f"2026-12-02T00:00:0{cfg['seed']}+00:00",
            "cost": {"train_seconds": 1.0, "eval_seconds": 1.0}}


def test_parse_sweep():
    assert parse_sweep("train.lr=1e-3, 2e-3,4e-3") == ("train.lr", ("1e-3", "2e-3", "4e-3"))
    assert parse_sweep("model.image_widths=[32,64],[64,128]") == ("model.image_widths", ("[32,64]", "[64,128]"))
    for bad in ("train.lr", "train.lr=", "=1,2", "train.lr=1,,2"):
        with pytest.raises(ConfigError, match="--sweep"):
            parse_sweep(bad)


def test_every_variant_gets_every_point_and_the_default_point_keeps_its_run_id():
    runs = plan("smoke", variants=",".join(VARIANTS), sweep=["train.lr=1e-3,2e-3", "model.dropout=0.0,0.1"])
    assert len(runs) == 2 * 2 * 2
    for v in VARIANTS:
        points = {r.point for r in runs if r.config.variant == v}
        assert points == {(("train.lr", lr), ("model.dropout", d)) for lr in (1e-3, 2e-3) for d in (0.0, 0.1)}
    assert len({r.run_id for r in runs}) == 8                     # the point is part of the identity
    assert all(r.config.sweep == {"axes": ["train.lr", "model.dropout"], "tune_seeds": None} for r in runs)
    # a point at the defaults (lr 2e-3, dropout 0.1) is the very run the grid makes without a sweep
    plain = {r.config.variant: r.run_id for r in plan("smoke", variants=",".join(VARIANTS))}
    default = {r.config.variant: r.run_id for r in runs if r.point == (("train.lr", 2e-3), ("model.dropout", 0.1))}
    assert default == plain


def test_a_key_both_set_and_swept_is_refused():
    with pytest.raises(ConfigError, match="both set .* and swept"):
        plan("smoke", variants="hard-ew", overrides=["train.lr=1e-3"], sweep=["train.lr=1e-3,2e-3"])


def test_a_grid_declares_its_axes_and_protocol_correctly():
    with pytest.raises(ConfigError, match="tune_seeds must be in 1..seeds"):
        Grid("bad", ("hard-ew",), seeds=2, sweep={"train.lr": (1e-3,)}, tune_seeds=3)
    with pytest.raises(ConfigError, match="needs a tuple of values"):
        Grid("bad", ("hard-ew",), sweep={"train.lr": 1e-3})


def test_selection_reads_validation_never_test():
    """Point A is better on validation, point B on test: A is chosen."""
    a = {"status": "ok", "seed": 0, "tasks": ["imdb"], "config": {"train": {"lr": 1e-3}},
         "metrics": {"imdb": {"primary": "accuracy", "val": {"accuracy": 0.9}, "test": {"accuracy": 0.5}}}}
    b = {**a, "config": {"train": {"lr": 2e-3}},
         "metrics": {"imdb": {"primary": "accuracy", "val": {"accuracy": 0.8}, "test": {"accuracy": 0.99}}}}
    scores = point_scores([a, b], ["train.lr"])
    assert choose(scores) == (("train.lr", 1e-3),)
    # an auxiliary task's validation metric does not count; a missing one makes the run unusable
    aux = {**a, "tasks": ["imdb", "cifar10"], "config": {"auxiliary": ["cifar10"]},
           "metrics": {**a["metrics"], "cifar10": {"primary": "accuracy", "val": {"accuracy": 0.1}}}}
    assert validation_score(aux) == pytest.approx(0.9)
    assert choose({(("train.lr", 1e-3),): float("nan")}) is None


def test_budget_saving_protocol_runs_the_remaining_seeds_at_the_point_chosen_on_validation(tuned_grid, tmp_path):
    results = tmp_path / tuned_grid
    runs = plan(tuned_grid, results_dir=results)
    tuning = [r for r in runs if not r.pending]
    assert len(tuning) == 2 * 2 and {r.config.seed for r in tuning} == {0}   # every point on seed 0 only
    assert sum(r.pending for r in runs) == 2 * 2                              # seeds 1, 2 wait
    assert all(r.config.sweep["tune_seeds"] == 1 for r in runs)
    # the tuning records: lr 1e-3 wins on validation for STL, 2e-3 for hard-ew; test says the opposite
    results.mkdir()
    wins = {"stl-conll2003": 1e-3, "hard-ew": 2e-3}
    with open(results / "runs.jsonl", "w") as f:
        for r in tuning[:-1]:   # one tuning run still missing
            good = dict(r.point)["train.lr"] == wins[r.config.variant]
            f.write(json.dumps(fake_record(r, 0.9 if good else 0.8, 0.5 if good else 0.99)) + "\n")
    again = plan(tuned_grid, results_dir=results)
    missing = tuning[-1].config.variant
    assert {r.config.variant for r in again if r.pending} == {missing}        # its tuning is not finished
    with open(results / "runs.jsonl", "a") as f:
        r = tuning[-1]
        good = dict(r.point)["train.lr"] == wins[r.config.variant]
        f.write(json.dumps(fake_record(r, 0.9 if good else 0.8, 0.5 if good else 0.99)) + "\n")
    final = plan(tuned_grid, results_dir=results)
    assert not any(r.pending for r in final)
    later = [r for r in final if r.config.seed > 0]
    assert len(later) == 2 * 2
    for r in later:
        assert r.config.train.lr == wins[r.config.variant]
        assert r.point == (("train.lr", wins[r.config.variant]),)


def test_the_grid_runs_the_tuning_then_the_chosen_point(tuned_grid, tmp_path, monkeypatch, capsys):
    """cmd_grid: the tuning runs, then a new plan with the chosen points, then those runs."""
    batches = []

    def fake_run_grid(runs, results_dir, **kw):
        todo = [r for r in runs if not r.pending and not any(r.run_id == d.run_id for b in batches for d in b)]
        batches.append(todo)
        results_dir.mkdir(parents=True, exist_ok=True)
        with open(results_dir / "runs.jsonl", "a") as f:
            for r in todo:
                f.write(json.dumps(fake_record(r, 0.9 if r.config.train.lr == 1e-3 else 0.8, 0.5)) + "\n")
        from lepton_bench.grid.runner import GridSummary
        return GridSummary(planned=len(runs), skipped=0, finished=len(todo), results=results_dir / "runs.jsonl")

    monkeypatch.setattr("lepton_bench.grid.runner.run_grid", fake_run_grid)
    assert main(["run", "--grid", tuned_grid, "--out", str(tmp_path), "--no-progress"]) == 0
    assert [len(b) for b in batches] == [4, 4]
    assert {r.config.train.lr for r in batches[1]} == {1e-3} and {r.config.seed for r in batches[1]} == {1, 2}
    recs = read_records(tmp_path / tuned_grid / "runs.jsonl")
    assert len(recs) == 8
    capsys.readouterr()
    assert main(["run", "--grid", tuned_grid, "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "protocol: 2 variants × 2 sweep points (train.lr) × 1 tuning seeds, then 2 more seeds" in out
    assert "train.lr=0.001" in out


def test_dry_run_shows_points_and_pending_runs(tuned_grid, tmp_path, capsys):
    assert main(["run", "--grid", tuned_grid, "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "after tuning" in out and "chosen on validation" in out and "train.lr=0.002" in out
    assert main(["run", "--variant", "hard-ew", "--sweep", "train.lr=1e-3,2e-3"]) == 2
    assert "--sweep: grid option" in capsys.readouterr().err


def test_extra_axes_give_the_matching_variants_more_points_and_the_plan_says_so(tuned_grid, tmp_path, capsys):
    name = "extra-axes-test"
    if name not in GRIDS:
        register_grid(Grid(name, VARIANTS, seeds=2, sweep={"train.lr": (1e-3, 2e-3)}, tune_seeds=1,
                           extra_sweep={"hard-*": {"model.dropout": (0.1, 0.3)}}, overrides={"train.steps": 2}))
    runs = plan(name, results_dir=tmp_path / name)
    points = {v: {r.point for r in runs if r.config.variant == v and not r.pending} for v in VARIANTS}
    assert points["stl-conll2003"] == {(("train.lr", 1e-3),), (("train.lr", 2e-3),)}
    assert points["hard-ew"] == {(("train.lr", lr), ("model.dropout", d)) for lr in (1e-3, 2e-3) for d in (0.1, 0.3)}
    assert {r.config.model.dropout for r in runs if r.config.variant == "stl-conll2003"} == {0.1}
    assert next(r for r in runs if r.config.variant == "hard-ew").config.sweep["axes"] == ["train.lr", "model.dropout"]
    # hard-ew's point at dropout 0.1 is the run the lr-only grid makes: the extra axis keeps run ids
    lr_only = {r.run_id for r in plan(tuned_grid, variants="hard-ew") if not r.pending}
    assert lr_only == {r.run_id for r in runs if r.config.variant == "hard-ew" and r.config.model.dropout == 0.1
                       and not r.pending}
    # the chosen point may be on the extra axis (validation says dropout 0.3, test says 0.1)
    (tmp_path / name).mkdir()
    with open(tmp_path / name / "runs.jsonl", "w") as f:
        for r in runs:
            if not r.pending:
                good = r.config.model.dropout == 0.3 or r.config.variant == "stl-conll2003"
                f.write(json.dumps(fake_record(r, 0.9 if good else 0.8, 0.5 if good else 0.99)) + "\n")
    later = [r for r in plan(name, results_dir=tmp_path / name) if r.config.seed == 1]
    assert {r.config.variant: r.config.model.dropout for r in later} == {"stl-conll2003": 0.1, "hard-ew": 0.3}
    assert main(["run", "--grid", name, "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("protocol: 1 variant × 2 sweep points (train.lr) and 1 variant × 4 sweep points (train.lr, "
            "model.dropout) × 1 tuning seeds") in out
    with pytest.raises(ConfigError, match="declare it once"):
        Grid("bad", VARIANTS, sweep={"train.lr": (1e-3,)}, extra_sweep={"hard-*": {"train.lr": (4e-3,)}})


def test_the_tagging_grid_keeps_its_committed_runs():
    """Its lr=2e-3, dropout=0.1 point is the grid as first run (5 seeds, before it had search axes):
    its tuning runs are committed records, and every committed record is a run of the grid — a tuning
    run, a later seed at a chosen point, or a later seed of that first grid."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results" / "tagging"
    committed = {r["run_id"]: r for r in read_records(runs_path(results))}
    runs = plan("tagging", results_dir=results)
    tuning = [r for r in runs if not r.pending and r.config.seed < 2]
    assert {dict(r.point)["train.lr"] for r in tuning} == {1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2}   # 8e-3, 1.6e-2 later
    later = {"tagging-ner-aux-auto_lambda"}   # added to the grid after its first run
    first = {r.run_id for r in tuning if r.config.train.lr == 2e-3 and r.config.model.dropout == 0.1
             and not r.member and r.config.variant not in later}   # the static front's points came later
    assert len(first) == 2 * 22
    assert first <= set(committed)
    planned = {r.run_id for r in runs if not r.pending}
    waiting = {r.config.variant for r in runs if r.pending}   # its tuning is not finished on the widened axis
    for rid, rec in committed.items():
        # a later seed at a point a narrower axis chose (1e-3..8e-3) stays a run of the grid's axes even
        # when the widened axis chooses a larger rate: it is kept, no longer planned
        superseded = rec["config"]["train"]["lr"] in (1e-3, 2e-3, 4e-3, 8e-3)
        assert rid in planned or (rec["seed"] >= 2 and (rec["variant"] in waiting or superseded or (
            rec["config"]["train"]["lr"] == 2e-3 and rec["config"]["model"]["dropout"] == 0.1))), rid


def test_simplex_weights_by_hand():
    """Density 5 over 3 tasks: k in {(3,1,1), (2,2,1)} and their permutations, weights 3k/5."""
    w = simplex_weights(["a", "b", "c"], 5)
    assert len(w) == 6
    assert {"a": 1.8, "b": 0.6, "c": 0.6} in w and {"a": 1.2, "b": 1.2, "c": 0.6} in w
    assert all(sum(p.values()) == pytest.approx(3.0) for p in w)
    # density 6: the equal point (2,2,2) is EW's own variant and is left out; 10 - 1 points
    assert len(simplex_weights(["a", "b", "c"], 6)) == 9 and {"a": 1.0, "b": 1.0, "c": 1.0} not in \
        simplex_weights(["a", "b", "c"], 6)
    assert simplex_weights(["a", "b"], 4) == [{"a": 0.5, "b": 1.5}, {"a": 1.5, "b": 0.5}]
    with pytest.raises(ConfigError, match="no interior point"):
        simplex_weights(["a", "b", "c"], 2)


def test_a_static_front_grid_runs_a_weightless_static_variant_at_every_simplex_point(tmp_path, capsys):
    name = "front-test"
    if name not in GRIDS:
        register_grid(Grid(name, ("tagging-hard-static", "tagging-hard-static-conll2003x2"), seeds=1,
                           static_front=4, overrides={"train.steps": 2}, sweep={"train.lr": (1e-3, 2e-3)}))
    runs = plan(name)
    front = [r for r in runs if r.config.variant == "tagging-hard-static"]
    weights = {tuple(r.config.weighting_args["static"].values()) for r in front}
    assert weights == {(1.5, 0.75, 0.75), (0.75, 1.5, 0.75), (0.75, 0.75, 1.5)}
    assert len(front) == 3 * 2 and len({r.run_id for r in front}) == 6      # each point tuned on the same axes
    assert {r.member for r in front} == {"w=1.5/0.75/0.75", "w=0.75/1.5/0.75", "w=0.75/0.75/1.5"}
    # a static variant with weights of its own stays one configuration
    fixed = [r for r in runs if r.config.variant == "tagging-hard-static-conll2003x2"]
    assert len(fixed) == 2 and {r.member for r in fixed} == {""}
    assert main(["run", "--grid", name, "--out", str(tmp_path), "--dry-run"]) == 0
    assert "tagging-hard-static (w=0.75/0.75/1.5)" in capsys.readouterr().out


def test_a_condition_is_a_setting_of_its_own_tuned_apart_for_the_variants_of_its_task(tmp_path):
    """Each budget of NER is its own member (tuned apart, its own chosen point); a variant without NER runs once;
    the default budget keeps the run id it had without the condition."""
    name = "condition-test"
    if name not in GRIDS:
        register_grid(Grid(name, ("stl-conll2003", "stl-imdb"), seeds=2, sweep={"train.lr": (1e-3, 2e-3)},
                           tune_seeds=1, conditions={"tasks.conll2003.train_fraction": (0.5, 1.0)},
                           overrides={"train.steps": 2}))
    runs = plan(name, results_dir=tmp_path)
    ner = [r for r in runs if r.config.variant == "stl-conll2003"]
    assert sorted({r.config.tasks["conll2003"].train_fraction for r in ner}) == [0.5, 1.0]
    assert len([r for r in ner if not r.pending]) == 4 and sum(r.pending for r in ner) == 2   # 2 members x 2 lr
    assert len([r for r in runs if r.config.variant == "stl-imdb"]) == 3          # 2 lr, then 1 seed after tuning
    plain = {r.run_id for r in plan(name, results_dir=tmp_path, variants="stl-conll2003",
                                    overrides=["tasks.conll2003.train_fraction=1.0"])}
    assert {r.run_id for r in ner if r.config.tasks["conll2003"].train_fraction == 1.0 and not r.pending} <= plain
    assert any("labels" not in r.member and "train_fraction=0.5" in r.member for r in ner)
    with pytest.raises(ConfigError, match="both a condition"):
        Grid("bad", ("stl-*",), sweep={"train.lr": (1e-3,)}, conditions={"train.lr": (1e-3,)})


def test_a_grid_takes_over_the_identical_runs_of_the_grids_it_borrows_from(tmp_path):
    from lepton_bench.grid.plan import borrow
    from lepton_bench.results import read_record_files, record_path, write_json_atomic

    name = "borrow-test"
    if name not in GRIDS:
        register_grid(Grid(name, ("stl-conll2003",), seeds=2, sweep={"train.lr": (1e-3, 2e-3)}, tune_seeds=1,
                           overrides={"train.steps": 2}, borrows=("lender",)))
    mine, lender = tmp_path / name, tmp_path / "lender"
    runs = plan(name, results_dir=mine)
    tuning = [r for r in runs if not r.pending]
    write_json_atomic(record_path(lender, tuning[0].run_id), fake_record(tuning[0], 0.8, 0.7))
    failed = {**fake_record(tuning[1], 0.9, 0.9), "status": "failed"}
    write_json_atomic(record_path(lender, tuning[1].run_id), failed)
    write_json_atomic(record_path(lender, "other-run"), {**fake_record(tuning[0], 0.1, 0.1), "run_id": "other-run"})
    assert borrow(runs, mine, ["lender"]) == 1                    # the ok record of a planned run only
    assert set(read_record_files(mine)) == {tuning[0].run_id}
    assert borrow(runs, mine, ["lender"]) == 0                    # nothing twice
