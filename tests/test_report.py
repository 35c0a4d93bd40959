"""The report: statistics checked against hand computations, tables, plots, failures, determinism."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from lepton_bench import report
from lepton_bench.errors import LeptonError
from lepton_bench.results import SCHEMA_VERSION, append_record

# Student-t 97.5% quantiles, from tables, so the CIs below are computed by hand.
T2, T3 = 12.706204736174698, 4.302652729749464   # 1 and 2 degrees of freedom
PRIMARY = {"cifar10": "accuracy", "imdb": "accuracy", "conll2003": "entity_f1", "conll2003_pos": "token_accuracy",
           "conll2003_chunk": "chunk_f1", "conll2003_spans": "entity_f1"}


def make_record(variant: str, seed: int, test: dict[str, float], *, weighting: str = "ew", status: str = "ok",
                train_seconds: float = 100.0, params: int = 1_000_000, infer_seconds: float = 10.0,
                finished_at: str = "2026-11-23T12:00:00+00:00", error: str | None = None,
                architecture: str | None = None, tag: str = "0123456789abcdef", auxiliary: tuple[str, ...] = (),
                ) -> dict:
    """A full record as training writes it, with one metric per task (task -> primary test value). The
    config is minimal, as an old record's may be: the report completes it with today's defaults.
    ``tag`` ends the run id (runs of one variant and seed with different configs need their own);
    ``auxiliary`` goes into the config when given (older records have no such key)."""
    tasks = list(test)
    arch = architecture or ("single" if variant.startswith("stl-") else "hard")
    rec = {
        "schema_version": SCHEMA_VERSION, "run_id": f"{variant}-s{seed}-{tag}", "status": status,
        "variant": variant, "tasks": tasks, "seed": seed, "config_hash": "0123456789abcdef",
        "config": {"variant": variant, "architecture": arch, "weighting": weighting,
                   "sampler": "all", "train": {"steps": 20, "eval_every": 10}, "limit_train": 64,
                   "limit_eval": None, "seed": seed, "tasks": {t: {"batch_size": 8} for t in tasks}},
        "metrics": {}, "curves": {}, "cost": {}, "started_at": "2026-11-23T11:00:00+00:00",
        "finished_at": finished_at,
        "env": {"lepton_bench": "0.1.0", "git": "719c3867c26d8923", "python": "3.11.7", "torch": "2.14.1",
                "cuda": None, "cpu": "AMD EPYC", "cpu_count": 2, "torch_threads": 2, "device": "cpu",
                "device_name": "AMD EPYC", "timm": "1.0.31"},
    }
    if auxiliary:
        rec["config"]["auxiliary"] = list(auxiliary)
    if status != "ok":
        rec["error"] = error
        return rec
    rec["metrics"] = {t: {"test": {PRIMARY[t]: v}, "val": {PRIMARY[t]: v}, "primary": PRIMARY[t]}
                      for t, v in test.items()}
    rec["selection"] = {"rule": "best mean validation primary metric over tasks", "best_step": 20}
    rec["curves"] = {"train_loss": [{"step": 10, "lr": 0.001, **{t: 0.5 for t in tasks}}],
                     "val": [{"step": s, **{t: {PRIMARY[t]: v * s / 20} for t, v in test.items()}} for s in (10, 20)]}
    per_task = {t: {"samples_per_s": 50.0, "infer_seconds": infer_seconds / len(tasks)} for t in tasks}
    rec["cost"] = {"train_seconds": train_seconds, "steps": 20, "flops_per_step": 2e9,
                   "params": {"total": params}, "memory": {"peak_rss_mb": 500.0}, "tasks": per_task}
    return rec


STL = {"cifar10": [0.80, 0.82], "imdb": [0.85, 0.87]}
EW = [{"cifar10": 0.90, "imdb": 0.88}, {"cifar10": 0.91, "imdb": 0.86}, {"cifar10": 0.92, "imdb": 0.87}]


def grid_records() -> list[dict]:
    """STL on cifar10 and imdb (2 seeds), hard-ew (3 seeds), hard-uw (= STL on cifar10), one failure."""
    recs = [make_record(f"stl-{t}", s, {t: v}, train_seconds=60.0 if t == "cifar10" else 40.0, params=600_000,
                        infer_seconds=4.0) for t, vals in STL.items() for s, v in enumerate(vals)]
    recs += [make_record("hard-ew", s, m, train_seconds=50.0 + s, params=700_000, infer_seconds=6.0,
                         finished_at=f"2026-11-23T12:0{s}:00+00:00") for s, m in enumerate(EW)]
    recs += [make_record("hard-uw", s, {"cifar10": v, "imdb": 0.86}, weighting="uw")
             for s, v in enumerate(STL["cifar10"])]
    recs.append(make_record("hard-ew", 3, {"cifar10": 0, "imdb": 0}, status="failed",
                            error="RuntimeError: boom | worker died", finished_at="2026-11-23T13:00:00+00:00"))
    return recs


def write_grid(tmp_path, records, name: str = "mini"):
    folder = tmp_path / "results" / name
    for r in records:
        append_record(folder / "runs.jsonl", r)
    return folder


def table_row(text: str, task: str | None, variant: str) -> list[str]:
    """The cells of a variant's row in a task's table of the README (``task`` None: the first table of ``text``)."""
    section = text.split(f"### {task} ")[1].split("\n\n")[1] if task else \
        next(b for b in text.split("\n\n") if b.startswith("| "))
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == variant:
            return cells
    raise AssertionError(f"no row {variant} in the {task} table")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(results folder, README path, README text) of grid_records(), rendered once for the module."""
    tmp = tmp_path_factory.mktemp("report")
    folder = write_grid(tmp, grid_records())
    path = report.write_report(folder, tmp / "out")
    return folder, path, path.read_text()


# --------------------------------------------------------------------------- pure functions


def test_mean_ci_by_hand():
    mean, std, half = report.mean_ci([0.90, 0.92, 0.91])
    assert mean == pytest.approx(0.91) and std == pytest.approx(0.01)
    assert half == pytest.approx(T3 * 0.01 / math.sqrt(3))
    assert report.mean_ci([0.5, None])[0] == 0.5 and math.isnan(report.mean_ci([0.5])[2])
    assert all(math.isnan(x) for x in report.mean_ci([]))


def test_delta_m_weighs_tasks_equally_over_their_metrics():
    stl = {"a": {"x": 0.5, "y": 0.8}, "b": {"z": 0.4}}
    mtl = {"a": {"x": 0.55, "y": 0.8}, "b": {"z": 0.36}, "c": {"w": 1.0}}   # c has no STL: left out
    by_hand = ((10.0 + 0.0) / 2 + (-10.0)) / 2                                # not the flat mean, 0
    assert report.delta_m(mtl, stl) == pytest.approx(by_hand)
    assert math.isnan(report.delta_m({"c": {"w": 1.0}}, stl))


def test_welch_needs_two_seeds_a_side_and_pareto_front():
    assert math.isnan(report.welch_p([0.9], [0.8, 0.81]))
    assert report.welch_p([0.90, 0.91, 0.92], [0.80, 0.82]) < 0.05
    points = [(1.0, 1.0), (0.5, 0.5), (0.8, 0.2), (2.0, 1.0), (1.5, 2.0)]
    assert report.pareto_front(points) == [1, 0, 4]


# --------------------------------------------------------------------------- the report


def test_delta_m_and_its_ci_match_hand_computation(rendered):
    stl_c, stl_i = (0.80 + 0.82) / 2, (0.85 + 0.87) / 2
    per_seed = [((m["cifar10"] - stl_c) / stl_c + (m["imdb"] - stl_i) / stl_i) / 2 * 100 for m in EW]
    mean = sum(per_seed) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in per_seed) / 2)
    half = T3 * std / math.sqrt(3)
    a = report.analyse("mini", report.load_records(rendered[0] / "runs.jsonl"))
    row = a.overall.set_index("name").loc["hard-ew"]
    assert row["dm"] == pytest.approx(mean) and row["dm_ci"] == pytest.approx(half)
    assert row["train_ratio"] == pytest.approx(51.0 / (60.0 + 40.0))     # mean of 50, 51, 52 s
    assert row["params_ratio"] == pytest.approx(700_000 / 1_200_000)
    assert row["infer_ratio"] == pytest.approx(6.0 / 8.0)
    assert f"**{mean:+.2f} ± {half:.2f}**" in rendered[2]                   # the best Δm, bold


def test_per_task_ci_significance_and_bold(rendered):
    text = rendered[2]
    ew = table_row(text, "cifar10", "hard-ew")
    assert ew[1] == "3" and ew[2] == "**0.9100 ± 0.0100**"                   # best mean: bold
    assert ew[3] == f"{T3 * 0.01 / math.sqrt(3):.4f}"                         # 95% CI half-width
    assert ew[4] == f"{(0.91 - 0.81) / 0.81 * 100:+.2f}%*"                   # clearly better: marked
    uw = table_row(text, "cifar10", "hard-uw")
    assert uw[2] == "0.8100 ± 0.0141" and uw[4] == "+0.00%"                   # equal to STL: no mark
    stl = table_row(text, "cifar10", "stl-cifar10 (STL)")
    assert stl[3] == f"{T2 * math.sqrt(2e-4) / math.sqrt(2):.4f}" and stl[4] == ""
    assert "hard-ew is ahead of STL on cifar10 (+12.35%, significant), imdb (+1.16%);" in text


def test_failed_runs_are_listed_and_left_out(rendered):
    text = rendered[2]
    failed = text.split("## Failed runs")[1]
    assert "hard-ew-s3-0123456789abcdef" in failed and "RuntimeError: boom \\| worker died" in failed
    assert "10 in `mini/runs.jsonl`, 9 ok, 1 failed" in text and "1 run failed and is left out" in text
    assert table_row(text, "imdb", "hard-ew")[1] == "3"
    assert "Date: 2026-11-23T13:00:00+00:00" in text


def test_summary_compares_adaptive_with_static_sweep(rendered):
    assert "No adaptive weighting beats the best static-sweep point, hard-ew" in rendered[2]
    assert "best adaptive one is hard-uw" in rendered[2]


def test_plots_exist_and_report_is_byte_identical(rendered):
    folder, path, text = rendered
    # no sweep, no diagnostics and no label budget in these records
    drawn = [n for n in report.PLOT_FILES
             if n not in ("sensitivity.png", "budget_curve.png") and not n.startswith("why_")]
    assert not (path.parent / "sensitivity.png").exists() and not (path.parent / "budget_curve.png").exists()
    for name in drawn:
        assert (path.parent / name).stat().st_size > 1000
        assert f"]({name})" in text
    pngs = {n: (path.parent / n).read_bytes() for n in drawn}
    again = report.write_report(folder / "runs.jsonl", path.parent)   # the file this time, not its folder
    assert again.read_bytes() == text.encode()
    assert {n: (path.parent / n).read_bytes() for n in drawn} == pngs


def test_default_out_and_missing_stl(tmp_path, monkeypatch):
    recs = [make_record("stl-cifar10", s, {"cifar10": v}) for s, v in enumerate(STL["cifar10"])]
    recs += [make_record("hard-ew", s, m) for s, m in enumerate(EW)]
    folder = write_grid(tmp_path, recs, "nostl")
    monkeypatch.chdir(tmp_path)
    path = report.write_report(folder)
    assert path.resolve() == tmp_path / "reports" / "nostl" / "README.md"
    text = path.read_text()
    assert text.startswith("# lepton_bench report: nostl\n")
    assert "no STL records for imdb" in text
    by_hand = sum((m["cifar10"] - 0.81) / 0.81 * 100 for m in EW) / 3          # Δm over cifar10 only
    a = report.analyse("nostl", report.load_records(folder / "runs.jsonl"))
    assert a.overall.set_index("name").loc["hard-ew", "dm"] == pytest.approx(by_hand)


def test_only_stl_runs(tmp_path):
    folder = write_grid(tmp_path, [make_record("stl-imdb", 0, {"imdb": 0.86})], "stl")
    text = report.write_report(folder, tmp_path / "out").read_text()
    assert "Only single-task (STL) runs so far" in text
    assert not (tmp_path / "out" / "delta_m_vs_cost.png").exists()            # nothing to draw
    assert (tmp_path / "out" / "per_task.png").stat().st_size > 0


def test_a_retried_run_supersedes_its_failure_and_all_failed(tmp_path):
    fail = make_record("stl-imdb", 0, {"imdb": 0}, status="failed", error="OSError: disk full")
    folder = write_grid(tmp_path, [fail, make_record("stl-imdb", 0, {"imdb": 0.86})], "retry")
    text = report.write_report(folder, tmp_path / "out").read_text()
    assert "1 ok, 0 failed" in text and "## Failed runs" not in text
    text = report.write_report(write_grid(tmp_path, [fail], "dead"), tmp_path / "out2").read_text()
    assert "No run finished successfully" in text and "## Per task" not in text and "OSError: disk full" in text


def test_missing_or_empty_results_raise(tmp_path):
    with pytest.raises(LeptonError, match="no results at"):
        report.write_report(tmp_path / "results" / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeptonError, match="holds no runs.jsonl"):
        report.write_report(tmp_path / "empty")
    (tmp_path / "empty" / "runs.jsonl").write_text("")
    with pytest.raises(LeptonError, match="holds no records"):
        report.write_report(tmp_path / "empty")


def test_report_does_not_import_torch():
    code = "import sys, lepton_bench.report; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- designs and claims

LEPTON_MODEL = {"trunk": "mlp", "depth": 1}


def lepton(rec: dict, stems: dict[str, str]) -> dict:
    """A record of the articles' design: cnn/bilstm stems, one MLP layer."""
    rec["config"]["model"] = {**LEPTON_MODEL, "stems": {t: stems[t] for t in rec["tasks"]}}
    return rec


def test_each_design_is_compared_with_its_own_stl_baseline(tmp_path):
    """lepton-hard-ew against lepton-stl-* (same stems and trunk), hard-ew against stl-*: never crossed."""
    stems = {"cifar10": "cnn", "imdb": "bilstm"}
    recs = grid_records()
    recs += [lepton(make_record(f"lepton-stl-{t}", s, {t: v}, train_seconds=30.0, params=500_000), stems)
             for t, vals in {"cifar10": [0.60, 0.62], "imdb": [0.75, 0.77]}.items() for s, v in enumerate(vals)]
    for r in recs[-4:]:
        r["config"]["architecture"] = "single"
    recs += [lepton(make_record("lepton-hard-ew", s, {"cifar10": 0.66, "imdb": 0.76}, train_seconds=45.0), stems)
             for s in range(2)]
    a = report.analyse("mini", recs)
    lep = next(g for g in a.groups if g.variant == "lepton-hard-ew")
    assert lep.designs == {"cifar10": "cnn → mlp×1", "imdb": "bilstm → mlp×1"}
    assert a.ref("cifar10", lep).variant == "lepton-stl-cifar10"
    hard = next(g for g in a.groups if g.variant == "hard-ew")
    assert a.ref("cifar10", hard).variant == "stl-cifar10"
    by_hand = ((0.66 - 0.61) / 0.61 + (0.76 - 0.76) / 0.76) / 2 * 100
    row = a.overall.set_index("name").loc["lepton-hard-ew"]
    assert row["dm"] == pytest.approx(by_hand)
    assert row["train_ratio"] == pytest.approx(45.0 / 60.0)
    cifar = a.per_task["cifar10"].set_index("name")
    assert cifar.loc["lepton-hard-ew", "delta"] == pytest.approx((0.66 - 0.61) / 0.61 * 100)
    assert cifar.loc["lepton-hard-ew", "baseline"] == "lepton-stl-cifar10"
    text = report.readme(a, "results/mini/runs.jsonl", [])
    assert table_row(text, "cifar10", "lepton-stl-cifar10 (STL)")[1] == "cnn → mlp×1"
    assert "STL models together: lepton-stl-cifar10, lepton-stl-imdb" in text


def test_a_model_setting_off_its_default_is_part_of_the_design():
    assert report.design_of({"model": {"stems": {"imdb": "bilstm"}, "dim": 256}}, "imdb") == \
        "bilstm → transformer×2 (dim=256)"
    # settings only sharing architectures read do not split STL from MTL
    assert report.design_of({"model": {"soft_l2": 0.5}}, "imdb") == report.design_of({}, "imdb")


def claims_of(text: str) -> str:
    return text.split("## The articles' claims")[1].split("\n## ")[0]


def cells_of(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_claims_table_sets_the_articles_figures_beside_each_design():
    """Claims come from the variants of the records (lepton-*), one row per design of the task."""
    recs = grid_records() + [lepton(make_record("lepton-hard-ew", s, {"cifar10": 0.5, "imdb": 0.6}),
                                    {"cifar10": "cnn", "imdb": "bilstm"}) for s in range(2)]
    text = report.readme(report.analyse("mini", recs), "mini/runs.jsonl", [])
    claims = claims_of(text)
    assert "3 training steps" not in claims and "20 training steps, 3 seeds, on cpu (AMD EPYC)" in claims
    rows = [cells_of(line) for line in claims.splitlines() if line.startswith("| cifar10")]
    assert rows[0][3] == "default stem → transformer×2" and rows[1][3] == "cnn → mlp×1"
    cells = rows[0]
    assert cells[1] == "accuracy" and cells[4] == "0.920" and cells[5] == "stl-cifar10" and cells[7] == "hard-ew"
    assert cells[-1] == f"{0.91 - 0.92:+.3f}"   # best mean here (hard-ew, 0.91) minus the claim
    assert rows[1][5:9] == ["—", "—", "lepton-hard-ew", "0.5000 ± 0.0000"]
    assert "| conll2003" not in claims          # no CoNLL-2003 runs in this grid: no row
    assert not hasattr(report, "CLAIMS") and not hasattr(report, "Claim")


def test_claims_state_the_budget_in_epochs_and_where_each_claim_is_checked_in_its_own_setting():
    """A short grid's claims section gives its budget in epochs (steps × batch ÷ training rows, from the STL
    runs) and names the grid that checks each claim in its own setting; that grid's own report does not."""
    stems = {"cifar10": "cnn", "imdb": "bilstm"}
    recs = [lepton(make_record("lepton-stl-cifar10", 0, {"cifar10": 0.5}, architecture="single"), stems),
            lepton(make_record("lepton-hard-ew", 0, {"cifar10": 0.5, "imdb": 0.6}), stems)]
    for r in recs:
        r["data"] = {t: {"sizes": {"train": 64, "validation": 16, "test": 16}} for t in r["tasks"]}
    claims = report.claims_section(report.analyse("mini", recs))
    assert "the budget in epochs: CIFAR-10 2.50 (batch 8 of 64 rows), IMDB 2.50 (batch 8 of 64 rows)" in claims
    assert ("These are 20-step numbers" in claims and "the CIFAR-10 and IMDB figures by the `standard` grid "
            "([its report](../standard/README.md))" in claims)
    assert "checked in its own setting" not in report.claims_section(report.analyse("standard", recs))


def test_no_claims_section_without_a_variant_that_claims(rendered):
    assert "## The articles' claims" not in rendered[2]   # stl-*, hard-*: no published figures
    assert report.claims_section(report.analyse("mini", grid_records())) == ""


def test_claims_table_survives_a_design_without_values():
    stems = {"cifar10": "cnn"}
    recs = [lepton(make_record("lepton-stl-cifar10", 0, {"cifar10": 0.8}, architecture="single"), stems),
            lepton(make_record("lepton-hard-ew", 0, {"cifar10": 0.8}), stems)]
    recs[1]["metrics"]["cifar10"]["test"]["accuracy"] = None   # e.g. a run whose metric was not finite
    row = next(line for line in report.claims_section(report.analyse("mini", recs)).splitlines()
               if line.startswith("| cifar10"))
    assert cells_of(row)[5:9] == ["lepton-stl-cifar10", "0.8000", "—", "—"]   # no MTL value: no crash, a dash


def test_claims_table_shows_token_accuracy_for_conll2003_with_its_note_and_entity_f1():
    """The articles' CoNLL-2003 97.3 is token accuracy: compared as such, entity F1 beside it, the why as a note."""
    stems = {"imdb": "bilstm", "conll2003": "bilstm"}
    recs = []
    for s, (acc, f1) in enumerate([(0.95, 0.80), (0.96, 0.82)]):
        recs.append(lepton(make_record("lepton-stl-conll2003", s, {"conll2003": f1}, architecture="single"), stems))
        recs[-1]["metrics"]["conll2003"]["test"]["token_accuracy"] = acc
    for s, (acc, f1) in enumerate([(0.94, 0.78), (0.96, 0.80)]):
        recs.append(lepton(make_record("lepton-hard-ew", s, {"imdb": 0.85, "conll2003": f1}), stems))
        recs[-1]["metrics"]["conll2003"]["test"]["token_accuracy"] = acc
    claims = claims_of(report.readme(report.analyse("mini", recs), "mini/runs.jsonl", []))
    lines = claims.splitlines()
    header = cells_of(next(line for line in lines if line.startswith("| task")))
    assert header[-3:] == ["STL entity_f1", "MTL entity_f1", "best here − claimed"]
    rows = [cells_of(line) for line in lines if line.startswith("| conll2003")]
    assert len(rows) == 1   # lepton-stl-conll2003 and lepton-hard-ew declare the same claim: once
    row = dict(zip(header[:5], rows[0][:5], strict=True))
    assert row == {"task": "conll2003", "metric": "token_accuracy", "claimed with": rows[0][2],
                   "design here": "bilstm → mlp×1", "claimed": "0.973"}
    assert rows[0][5:9] == ["lepton-stl-conll2003", f"0.9550 ± {math.sqrt(5e-5):.4f}",
                            "lepton-hard-ew", f"0.9500 ± {math.sqrt(2e-4):.4f}"]
    assert rows[0][9:11] == [f"0.8100 ± {math.sqrt(2e-4):.4f}", f"0.7900 ± {math.sqrt(2e-4):.4f}"]
    assert rows[0][11] == f"{0.955 - 0.973:+.3f}"
    assert cells_of(next(line for line in lines if line.startswith("| imdb")))[9:11] == ["", ""]   # no beside
    note = [line for line in lines if line.startswith("The CoNLL-2003 figure")]
    assert len(note) == 1 and "token accuracy, not seqeval entity F1" in note[0]


def test_one_variant_with_two_designs_is_two_groups_named_apart():
    recs = [make_record("hard-ew", s, {"imdb": 0.85, "conll2003": 0.5}, tag="a") for s in range(2)]
    recs += [make_record("hard-ew", s, {"imdb": 0.84, "conll2003": 0.6}, tag="b") for s in range(2)]
    for r in recs[:2]:
        r["config"]["model"] = {"stems": {"imdb": "bilstm"}}
    for r in recs[2:]:
        r["config"]["model"] = {"stems": {"conll2003": "bilstm"}}
    names = sorted(g.name for g in report.analyse("mini", recs).groups)
    assert names == ["hard-ew (model.stems.conll2003=bilstm)", "hard-ew (model.stems.imdb=bilstm)"]


# --------------------------------------------------------------------------- grouping by configuration


def test_runs_of_one_variant_with_different_configs_are_separate_rows(tmp_path):
    """hard-ew at lr 2e-3 (the default), at 1e-3 and with weighting=uw: three rows, never averaged."""
    recs = [make_record(f"stl-{t}", s, {t: v}) for t, vals in STL.items() for s, v in enumerate(vals)]
    runs = {"default": (0.002, "ew", [0.90, 0.92]), "lr": (0.001, "ew", [0.70, 0.72]),
            "uw": (0.002, "uw", [0.80, 0.84])}
    for tag, (lr, weighting, vals) in runs.items():
        for s, v in enumerate(vals):
            recs.append(make_record("hard-ew", s, {"cifar10": v, "imdb": 0.86}, weighting=weighting, tag=tag))
            recs[-1]["config"]["train"]["lr"] = lr
    folder = write_grid(tmp_path, recs)
    text = report.write_report(folder, tmp_path / "out").read_text()
    labels = {"default": "hard-ew", "lr": "hard-ew (train.lr=0.001)", "uw": "hard-ew (weighting=uw)"}
    for tag, label in labels.items():
        vals = runs[tag][2]
        row = table_row(text, "cifar10", label)
        mean = sum(vals) / 2
        assert row[1] == "2" and row[2].strip("*").startswith(f"{mean:.4f} ± ")
        assert row[4].rstrip("*") == f"{(mean - 0.81) / 0.81 * 100:+.2f}%"
        assert table_row(text, "imdb", label)[1] == "2"
        overall = section(text, "Overall")
        assert sum(cells_of(line)[0] == label for line in overall.splitlines() if line.startswith("|")) == 1
    a = report.analyse("mini", report.load_records(folder / "runs.jsonl"))
    assert sorted(g.name for g in a.mtl) == sorted(labels.values())
    # the adaptive weighting is set against the static sweep (equal weights) of its design and architecture
    assert "best static-sweep point, hard-ew " in text and "best adaptive one is hard-ew (weighting=uw)" in text


def test_labels_stay_unique_when_only_limits_differ():
    """Limits are part of each group's own defaults; when they are all that differs, they show."""
    recs = [make_record("hard-ew", 0, {"imdb": 0.85}, tag="a"), make_record("hard-ew", 0, {"imdb": 0.84}, tag="b")]
    recs[1]["config"]["limit_eval"] = 24
    names = sorted(g.name for g in report.analyse("mini", recs).groups)
    assert names == ["hard-ew (limit_eval=24)", "hard-ew (limit_eval=none)"]


def test_stl_is_recognised_from_architecture_single_not_from_names(tmp_path):
    """A single-task variant of any name (here an unregistered plugin's) is the STL baseline; a variant
    named stl-* that shares a trunk is not."""
    recs = [make_record("alone-imdb", s, {"imdb": v}, architecture="single") for s, v in enumerate([0.80, 0.82])]
    recs += [make_record("hard-ew", s, {"imdb": v}) for s, v in enumerate([0.84, 0.86])]
    recs += [make_record("stl-imdb", s, {"imdb": 0.5}, architecture="hard") for s in range(2)]
    a = report.analyse("mini", recs)
    hard = next(g for g in a.groups if g.variant == "hard-ew")
    assert a.ref("imdb", hard).variant == "alone-imdb" and not next(g for g in a.groups if g.variant == "stl-imdb").stl
    text = report.readme(a, "mini/runs.jsonl", [])
    assert table_row(text, "imdb", "alone-imdb (STL)")[4] == ""
    assert table_row(text, "imdb", "hard-ew")[4] == f"{(0.85 - 0.81) / 0.81 * 100:+.2f}%"
    assert table_row(text, "imdb", "stl-imdb")[4].rstrip("*") == f"{(0.5 - 0.81) / 0.81 * 100:+.2f}%"
    assert "## The articles' claims" not in text   # unknown variant names are skipped, not an error


def test_the_stl_baseline_agrees_on_training_settings():
    """Of two STL groups of the task and design, the one trained like the MTL group wins over more runs."""
    recs = [make_record("stl-imdb", s, {"imdb": 0.80}, tag="same") for s in range(2)]
    recs += [make_record("stl-imdb", s, {"imdb": 0.70}, tag="long") for s in range(3)]
    for r in recs[2:]:
        r["config"]["train"]["steps"] = 40
    recs += [make_record("hard-ew", s, {"imdb": 0.84}) for s in range(2)]
    a = report.analyse("mini", recs)
    hard = next(g for g in a.groups if g.variant == "hard-ew")
    assert a.ref("imdb", hard).name == "stl-imdb (train.steps=20)"   # steps off the variant's default (2000)
    assert {g.name for g in a.groups if g.stl} == {"stl-imdb (train.steps=20)", "stl-imdb (train.steps=40)"}
    assert a.overall.set_index("name").loc["hard-ew", "dm"] == pytest.approx((0.84 - 0.80) / 0.80 * 100)


# --------------------------------------------------------------------------- auxiliary tasks and shared passes

NER_STL, POS_STL = [0.80, 0.82], [0.90, 0.92]
AUX = "ner-aux-pos-w0.5"   # NER the task, POS auxiliary: ahead on NER, far behind on POS


def aux_records() -> list[dict]:
    """STL on conll2003 and conll2003_pos; AUX (POS auxiliary, very negative on it) and ner-aux-lucky
    (POS auxiliary and far ahead on it, behind on NER), 2 seeds each."""
    recs = [make_record(f"stl-{t}", s, {t: v}, train_seconds=40.0, params=500_000, infer_seconds=4.0)
            for t, vals in {"conll2003": NER_STL, "conll2003_pos": POS_STL}.items() for s, v in enumerate(vals)]
    recs += [make_record(AUX, s, {"conll2003": ner, "conll2003_pos": pos}, weighting="static", train_seconds=60.0,
                         params=600_000, infer_seconds=4.0, auxiliary=("conll2003_pos",))
             for s, (ner, pos) in enumerate([(0.88, 0.45), (0.90, 0.47)])]
    recs += [make_record("ner-aux-lucky", s, {"conll2003": ner, "conll2003_pos": 0.99}, weighting="static",
                         auxiliary=("conll2003_pos",)) for s, ner in enumerate([0.70, 0.72])]
    return recs


def test_an_auxiliary_task_is_reported_but_left_out_of_delta_m_and_the_verdict():
    a = report.analyse("aux", aux_records())
    g = next(g for g in a.groups if g.name == AUX)
    assert g.auxiliary == ("conll2003_pos",) and g.main == ("conll2003",)
    ner = sum(NER_STL) / 2
    by_hand = sum((v - ner) / ner * 100 for v in (0.88, 0.90)) / 2          # NER only: POS (−50%) left out
    row = a.overall.set_index("name").loc[AUX]
    assert row["dm"] == pytest.approx(by_hand)
    assert row["train_ratio"] == pytest.approx(60.0 / 80.0)                  # cost: every task it trains
    assert row["params_ratio"] == pytest.approx(600_000 / 1_000_000)
    pos = a.per_task["conll2003_pos"].set_index("name").loc[AUX]
    assert pos["aux"] and pos["delta"] == pytest.approx((0.46 - 0.91) / 0.91 * 100)   # still shown
    text = report.readme(a, "aux/runs.jsonl", [])
    summary = report.summary(a)
    words = in_words(summary)
    assert "conll2003_pos" not in words   # the verdict in words reads the main task only
    glance = table_row(summary, None, AUX)   # the first screen: the auxiliary task's Δ shown, marked, out of Δm
    assert glance[1] == "auxiliary tasks" and glance[2].endswith("(conll2003)")
    assert glance[4] == f"({(0.46 - 0.91) / 0.91 * 100:+.2f}%* aux)"
    assert f"{AUX} is ahead of STL on conll2003 ({(0.89 - ner) / ner * 100:+.2f}%, significant); Δm" in summary
    assert "1 of 2 multi-task variants beat their matched STL baseline significantly" in summary
    assert "ner-aux-lucky (Δm " in summary and "is ahead of STL on no task and has no positive Δm" in summary
    # the per-task table marks the auxiliary row and still gives its Δ vs STL, with its significance
    cells = table_row(text, "conll2003_pos", f"{AUX} (aux)")
    assert cells[4] == f"{(0.46 - 0.91) / 0.91 * 100:+.2f}%*"
    assert table_row(text, "conll2003", AUX)[4].rstrip("*") == f"{(0.89 - ner) / ner * 100:+.2f}%"
    assert "A row marked (aux): the task is auxiliary in that variant" in text
    assert ("- Auxiliary tasks (trained, reported, left out of checkpoint selection, Δm and the verdict): "
            f"conll2003_pos in ner-aux-lucky; conll2003_pos in {AUX}\n") in text
    overall = text.split("## Overall")[1]
    assert "Δm reads a variant's main tasks only" in overall and "auxiliary ones included" in overall
    assert cells_of(next(line for line in overall.splitlines() if line.startswith(f"| {AUX}")))[1] == \
        "conll2003+conll2003_pos (aux)"


def test_a_report_without_auxiliary_tasks_says_nothing_of_them(rendered):
    assert "(aux)" not in rendered[2] and "uxiliary" not in rendered[2]


def test_an_auxiliary_list_makes_its_own_group():
    recs = [make_record("hard-ew", s, {"conll2003": 0.8, "conll2003_pos": 0.9}, tag="main") for s in range(2)]
    recs += [make_record("hard-ew", s, {"conll2003": 0.8, "conll2003_pos": 0.9}, tag="aux",
                         auxiliary=("conll2003_pos",)) for s in range(2)]
    names = sorted(g.name for g in report.analyse("mini", recs).groups)
    assert names == ["hard-ew", "hard-ew (auxiliary=[conll2003_pos])"]


def test_claims_read_main_tasks_only():
    """lepton-hard-ew with imdb auxiliary: its imdb accuracy is not the variant's claim, its cifar10 is."""
    stems = {"cifar10": "cnn", "imdb": "bilstm"}
    recs = [lepton(make_record(f"lepton-stl-{t}", 0, {t: v}, architecture="single"), stems)
            for t, v in {"cifar10": 0.60, "imdb": 0.75}.items()]
    recs += [lepton(make_record("lepton-hard-ew", s, {"cifar10": 0.66, "imdb": 0.99}, auxiliary=("imdb",)), stems)
             for s in range(2)]
    lines = claims_of(report.readme(report.analyse("mini", recs), "mini/runs.jsonl", [])).splitlines()
    imdb = cells_of(next(line for line in lines if line.startswith("| imdb")))
    assert imdb[5:9] == ["lepton-stl-imdb", "0.7500", "—", "—"] and imdb[-1] == f"{0.75 - 0.88:+.3f}"
    cifar = cells_of(next(line for line in lines if line.startswith("| cifar10")))
    assert cifar[7:9] == ["lepton-hard-ew", "0.6600 ± 0.0000"]


def test_a_shared_pass_is_compared_with_the_sum_of_the_stl_passes():
    """hard on the CoNLL-2003 input group: one encoder pass serves NER, POS and chunking, each task's
    infer_seconds a third of it and its flops_per_step the group's; the ratios divide the one pass,
    and the run's own step cost, by the sum of the three STL models'."""
    tagging = ("conll2003", "conll2003_pos", "conll2003_chunk")
    recs = [make_record(f"stl-{t}", s, {t: 0.8 + s / 100}, train_seconds=100.0, params=400_000,
                        infer_seconds=6.0) for t in tagging for s in range(2)]
    recs += [make_record("hard-ew", s, dict.fromkeys(tagging, 0.8), train_seconds=150.0, params=500_000,
                         infer_seconds=9.0) for s in range(2)]
    for r in recs:
        for per_task in r["cost"]["tasks"].values():
            per_task.update(group="conll2003", flops_per_step=r["cost"]["flops_per_step"])
    assert [p["infer_seconds"] for p in recs[-1]["cost"]["tasks"].values()] == [3.0, 3.0, 3.0]
    a = report.analyse("tagging", recs)
    row = a.overall.set_index("name").loc["hard-ew"]
    assert row["infer_s"] == pytest.approx(9.0) and row["infer_ratio"] == pytest.approx(9.0 / 18.0)
    assert row["train_ratio"] == pytest.approx(150.0 / 300.0)
    assert row["params_ratio"] == pytest.approx(500_000 / 1_200_000)
    assert row["flops"] == pytest.approx(2e9)                     # the group's, not counted once per task
    overall = report.readme(a, "tagging/runs.jsonl", []).split("## Overall")[1].splitlines()
    mtl = cells_of(next(line for line in overall if line.startswith("| hard-ew")))
    assert mtl[5:8] == ["150.0", "0.50×", "2.00"] and mtl[-2:] == ["9.0", "0.50×"]
    together = cells_of(next(line for line in overall if line.startswith("| STL models together")))
    assert together[5:8] == ["300.0", "1.00×", "6.00"] and together[-2:] == ["18.0", "1.00×"]
    # training throughput: the group's shared batch counts once (50 inputs/s), not once per task (150)
    assert row["samples_s"] == pytest.approx(50.0)
    assert a.overall.set_index("name").loc["stl-conll2003", "samples_s"] == pytest.approx(50.0)


# --------------------------------------------------------------------------- the tagging grid's context

TAGGING = ("conll2003", "conll2003_pos", "conll2003_chunk")


def tagging_records() -> list[dict]:
    """STL on the three tasks, tagging-hard-ew and -uw on all three, NER with POS auxiliary (2 seeds each)."""
    recs = [make_record(f"tagging-stl-{t}", s, {t: v + s / 100}, architecture="single")
            for t, v in zip(TAGGING, (0.80, 0.93, 0.87), strict=True) for s in range(2)]
    recs += [make_record("tagging-hard-ew", s, {"conll2003": 0.79, "conll2003_pos": 0.93, "conll2003_chunk": 0.88},
                         tag="ew") for s in range(2)]
    recs += [make_record("tagging-hard-uw", s, {"conll2003": 0.78 + s / 100, "conll2003_pos": 0.92,
                                                "conll2003_chunk": 0.88}, weighting="uw") for s in range(2)]
    # NER alone decides: +3% on NER, its POS (auxiliary) far behind
    recs += [make_record("tagging-ner-aux-both-w0.1", s, {"conll2003": 0.83 + s / 100, "conll2003_pos": 0.50,
                                                          "conll2003_chunk": 0.50},
                         weighting="static", auxiliary=("conll2003_pos", "conll2003_chunk")) for s in range(2)]
    return recs


def section(text: str, title: str) -> str:
    return text.split(f"## {title}")[1].split("\n## ")[0]


def test_the_literature_section_sets_published_figures_and_findings_beside_the_grid():
    text = report.readme(report.analyse("tagging", tagging_records()), "tagging/runs.jsonl", [])
    lit = section(text, "What the literature reports")
    rows = {cells_of(line)[0]: cells_of(line) for line in lit.splitlines() if line.startswith("| [")}
    ma = rows["[Ma & Hovy 2016](https://arxiv.org/abs/1603.01354)"]
    assert ma[1:3] == ["conll2003", "entity_f1"] and ma[5] == "0.808"
    assert ma[6] == "tagging-stl-conll2003" and ma[8] == "tagging-ner-aux-both-w0.1"   # NER as a main task
    assert ma[-1] == f"{0.835 - 0.8076:+.3f}"          # best mean here (0.835) minus the figure
    assert len(rows) == 4 and "| conll2003_pos" not in lit    # figures for NER only
    assert "Martínez Alonso & Plank 2017" in lit and "https://aclanthology.org/E17-1005" in lit
    # what this grid measured with auxiliary tasks, next to the findings
    assert ("Measured here: With auxiliary tasks, conll2003 (entity_f1) is ahead of its STL baseline in 1 of "
            "1 variant (0 significantly; 0 significantly behind)") in lit
    assert "## The articles' claims" not in text     # the articles' claims are another kind


def test_the_setting_says_which_labels_are_silver_or_derived():
    recs = tagging_records() + [make_record("stl-conll2003_spans", 0, {"conll2003_spans": 0.9})]
    setting = section(report.readme(report.analyse("tagging", recs), "t/runs.jsonl", []), "Setting")
    assert "- Labels of conll2003_pos, conll2003_chunk: silver labels" in setting
    assert "- Labels of conll2003_spans: derived from conll2003's labels" in setting
    assert "Labels of" not in section(report.readme(report.analyse("mini", grid_records()), "m/runs.jsonl", []),
                                      "Setting")


def test_the_setting_says_which_runs_were_packed_and_at_how_many_per_device():
    """Records whose env says ``packed`` (--runs-per-device): how many, at how many per device, which variants,
    and that their cost figures are not those of a run alone; records without it: no such line."""
    recs = grid_records()
    assert "Packed runs" not in section(report.readme(report.analyse("mini", recs), "m/runs.jsonl", []), "Setting")
    ew = [r for r in recs if r["variant"] == "hard-ew"]
    for k, r in enumerate(ew):
        r["env"]["packed"] = {"runs_per_device": 2, "slot": k % 2, "slots": 2, "device": "cpu"}
    stl = next(r for r in recs if r["variant"] == "stl-imdb")
    stl["env"] = {**stl["env"], "device": "cuda", "packed": {"runs_per_device": 4, "slot": 5, "slots": 8,
                                                             "device": "1"}}
    setting = section(report.readme(report.analyse("mini", recs), "m/runs.jsonl", []), "Setting")
    line = next(x for x in setting.splitlines() if x.startswith("- Packed runs"))
    n_ew, n_stl = len(ew), sum(r["variant"] == "stl-imdb" for r in recs)
    assert line.startswith(f"- Packed runs: {len(ew) + 1} of {len(recs)} ran packed")
    assert f"{n_ew} runs at 2 per device on cpu, 1 run at 4 per device on cuda" in line
    assert f"hard-ew ({n_ew} of {n_ew}), stl-imdb (1 of {n_stl})" in line
    assert "not of a run alone" in line


def test_a_static_variant_with_auxiliary_tasks_is_no_point_of_the_three_task_sweep():
    """tagging-ner-aux-both's Δm reads NER alone: it must not be the 'best static point' that the
    three-task adaptive weightings are compared with, nor share their bold best Δm."""
    a = report.analyse("tagging", tagging_records())
    text = report.readme(a, "tagging/runs.jsonl", [])
    assert "No adaptive weighting beats the best static-sweep point, tagging-hard-ew" in text
    assert "ner-aux-both-w0.1 (Δm" not in report.summary(a).split("No adaptive")[1]
    overall = section(text, "Overall").splitlines()
    bold = [cells_of(line)[0] for line in overall if line.startswith("| ") and "**" in line]
    assert bold == ["tagging-hard-ew", "tagging-ner-aux-both-w0.1"]   # one best per set of main tasks


def test_mean_rank_by_hand_within_each_set_of_main_tasks():
    """Three main tasks: NER STL 0.805 > ew 0.79 > uw 0.785; POS STL 0.935 > ew 0.93 > uw 0.92; chunk ew = uw
    0.88 (1.5 each) > STL 0.875. NER alone (aux-both): 0.835 > STL 0.805."""
    a = report.analyse("tagging", tagging_records())
    mr = a.overall.set_index("name")["mean_rank"]
    assert mr["tagging-hard-ew"] == pytest.approx((2 + 2 + 1.5) / 3)
    assert mr["tagging-hard-uw"] == pytest.approx((3 + 3 + 1.5) / 3)
    assert mr["tagging-ner-aux-both-w0.1"] == pytest.approx(1.0)
    text = report.readme(a, "tagging/runs.jsonl", [])
    assert "mean rank ↓" in section(text, "Overall")
    assert f"Mean rank of the STL baselines: {(1 + 1 + 3) / 3:.2f} among the variants on conll2003+" in text
    assert "2.00 among the variants on conll2003 (" in text


def test_standing_baselines_place_each_method_against_the_static_front_by_hand():
    """Static points ew (0.80, 0.80) and cifar10 x2 (0.86, 0.75) form the front; uw (0.90, 0.78) dominates
    the second (beyond), pcgrad (0.78, 0.78) is dominated by ew (below), rlw (0.82, 0.79) trades off (on).
    Reference point: 0.01 below the lowest mean per task, STL's 0.70 -> (0.69, 0.69). Front hypervolume:
    0.06 x 0.17 + 0.05 x 0.11 = 0.0157; with uw: 0.06 x 0.21 + 0.03 x 0.21 + 0.02 x 0.11 = 0.0211. The best
    static point by Δm: cifar10 x2 (+15.00% against ew's +14.29%)."""
    from lepton_bench.report.baselines import standing_rows, standing_section
    from lepton_bench.report.stats import holm

    def pair(name, c, i, **kw):   # two seeds, ±0.01 around (c, i)
        return [make_record(name, s, {"cifar10": c + d, "imdb": i + d}, **kw) for s, d in enumerate((-0.01, 0.01))]

    recs = [make_record(f"stl-{t}", s, {t: 0.70 + d}) for t in ("cifar10", "imdb") for s, d in enumerate((-0.01, 0.01))]
    recs += pair("hard-ew", 0.80, 0.80) + pair("hard-static-cifar10x2", 0.86, 0.75, weighting="static")
    recs += pair("hard-uw", 0.90, 0.78, weighting="uw") + pair("hard-pcgrad", 0.78, 0.78, weighting="pcgrad")
    recs += pair("hard-rlw", 0.82, 0.79, weighting="rlw")
    a = report.analyse("mini", recs)
    rows = {r["name"]: r for r in standing_rows(a)}
    assert {n: r["place"] for n, r in rows.items()} == {"hard-uw": "beyond", "hard-pcgrad": "below", "hard-rlw": "on"}
    assert rows["hard-uw"]["origin"] == pytest.approx((0.69, 0.69))
    assert rows["hard-uw"]["hv_ratio"] == pytest.approx(0.0211 / 0.0157)
    assert rows["hard-pcgrad"]["hv_ratio"] == pytest.approx(1.0)
    assert rows["hard-rlw"]["rlw_name"] == ""          # no comparison of RLW with itself
    assert rows["hard-uw"]["ew_name"] == "hard-ew" and rows["hard-uw"]["static_name"] == "hard-static-cifar10x2"
    # every p of the table, Holm-corrected together
    raw = [r[k] for r in rows.values() for k in ("ew_p", "rlw_p", "static_p")]
    assert [r[k] for r in rows.values() for k in ("ew_holm", "rlw_holm", "static_holm")] == pytest.approx(
        holm(raw), nan_ok=True)
    text = standing_section(a)
    assert "hard-uw goes beyond the static front" in text and "hard-pcgrad lies below the static front" in text
    verdicts = [line for line in text.splitlines() if line.startswith("- ")]
    assert [v.split(" ")[1] for v in verdicts] == list(rows)                  # one bullet per method
    # each comparison named as the table's signs and Holm-corrected p say
    for line, r in zip(verdicts, rows.values(), strict=True):
        for key, what in (("ew", "EW"), ("rlw", "RLW"), ("static", "the best static point")):
            if not r[f"{key}_name"]:
                assert f" {what}" not in line.split(" static front")[1]
                continue
            side = "ahead of" if r[f"{key}_diff"] > 0 else "behind"
            clause = next(c for c in line.replace(" but ", ";").split(";") if what in c)
            assert side in clause and (f"{what} (significant)" in clause) == (r[f"{key}_holm"] < 0.05)
    assert "(0.6900, 0.6900)" in text


# --------------------------------------------------------------------------- tuned tables

def swept(rec: dict, lr: float, val: float, tune_seeds: int | None = None) -> dict:
    """A record of a sweep point train.lr=lr whose validation score is ``val`` (its test stays)."""
    rec["run_id"] = rec["run_id"].replace("-s", f"-lr{lr}-s", 1)
    rec["config"]["train"]["lr"] = lr
    rec["config"]["sweep"] = {"axes": ["train.lr"], "tune_seeds": tune_seeds}
    for m in rec["metrics"].values():
        m["val"] = {m["primary"]: val}
    return rec


def test_tuned_tables_keep_the_point_chosen_on_validation_never_on_test(tmp_path):
    """STL and hard-ew at two learning rates: 1e-3 is better on validation, 2e-3 on test. The tables
    show the 1e-3 points only (and hard-ew is compared with the tuned STL); the sensitivity section
    lists all four with the chosen ones marked."""
    recs = []
    for s in range(2):
        recs.append(swept(make_record("stl-imdb", s, {"imdb": 0.80}), 1e-3, 0.90))
        recs.append(swept(make_record("stl-imdb", s, {"imdb": 0.95}), 2e-3, 0.70))
        recs.append(swept(make_record("hard-ew", s, {"imdb": 0.84}, tag="a"), 1e-3, 0.91))
        recs.append(swept(make_record("hard-ew", s, {"imdb": 0.99}, tag="b"), 2e-3, 0.60))
    a = report.analyse("mini", recs)
    assert sorted(g.name for g in a.groups) == ["hard-ew (train.lr=0.001)", "stl-imdb (train.lr=0.001)"]
    row = a.per_task["imdb"].set_index("name").loc["hard-ew (train.lr=0.001)"]
    assert row["baseline"] == "stl-imdb (train.lr=0.001)"
    assert row["delta"] == pytest.approx((0.84 - 0.80) / 0.80 * 100)
    text = report.readme(a, "mini/runs.jsonl", [])
    tuning = section(text, "Tuning: every sweep point")
    rows = [cells_of(line) for line in tuning.splitlines() if line.startswith("| hard-ew") or line.startswith("| stl")]
    assert ["hard-ew", "train.lr=0.001", "2", "0.9100", "0.8400", "✓"] in rows
    assert ["hard-ew", "train.lr=0.002", "2", "0.6000", "0.9900", ""] in rows
    assert "every point on every seed" in tuning
    out = report.write_report(write_grid(tmp_path, recs) / "runs.jsonl", tmp_path / "report")
    assert (out.parent / "sensitivity.png").stat().st_size > 1000
    assert out.read_text().count("](sensitivity.png)") == 1   # with its table, not again under Plots


def test_a_tuned_model_setting_is_no_part_of_the_design_stl_is_matched_by():
    """STL chose dropout 0.3 on validation, hard-ew 0.1 (the default): both tuned on model.dropout, so
    hard-ew is still compared with the tuned STL (the tagging grid's chunking STL chose 0.3)."""
    recs = []
    for s in range(2):
        for variant, drop, val, test in (("stl-imdb", 0.1, 0.70, 0.80), ("stl-imdb", 0.3, 0.90, 0.82),
                                         ("hard-ew", 0.1, 0.91, 0.84), ("hard-ew", 0.3, 0.60, 0.85)):
            rec = make_record(variant, s, {"imdb": test}, tag=f"d{drop}")
            rec["config"]["model"] = {**rec["config"].get("model", {}), "dropout": drop}
            rec["config"]["sweep"] = {"axes": ["model.dropout"], "tune_seeds": None}
            for m in rec["metrics"].values():
                m["val"] = {m["primary"]: val}
            recs.append(rec)
    a = report.analyse("mini", recs)
    assert sorted(g.name for g in a.groups) == ["hard-ew", "stl-imdb (model.dropout=0.3)"]
    row = a.per_task["imdb"].set_index("name").loc["hard-ew"]
    assert row["baseline"] == "stl-imdb (model.dropout=0.3)"
    assert row["delta"] == pytest.approx((0.84 - 0.82) / 0.82 * 100)


def test_the_budget_saving_protocol_chooses_on_the_tuning_seeds_and_says_so():
    """Tuned on seed 0: 2e-3 wins there; seed 1 ran at 2e-3 only (its validation would not change it)."""
    recs = [swept(make_record("hard-ew", 0, {"imdb": 0.8}, tag="a"), 1e-3, 0.80, tune_seeds=1),
            swept(make_record("hard-ew", 0, {"imdb": 0.8}, tag="b"), 2e-3, 0.85, tune_seeds=1),
            swept(make_record("hard-ew", 1, {"imdb": 0.8}, tag="b"), 2e-3, 0.10, tune_seeds=1)]
    a = report.analyse("mini", recs)
    (fam,) = a.tuning
    assert fam.chosen.name == "hard-ew" and len(fam.chosen.runs) == 2   # 2e-3: the default, so no label
    tuning = section(report.readme(a, "mini/runs.jsonl", []), "Tuning: every sweep point")
    assert "budget-saving: every point on the first 1 seeds" in tuning
    assert ["hard-ew", "train.lr=0.002", "1 (+1)", "0.8500"] == [
        cells_of(line) for line in tuning.splitlines() if "0.002" in line][0][:4]


def test_a_point_run_before_the_sweep_joins_its_family():
    """The default point's runs may predate the sweep (same run id, no axes in their records)."""
    old = [make_record("hard-ew", s, {"imdb": 0.8}, tag="old") for s in range(2)]
    for r in old:
        r["config"]["train"]["lr"] = 2e-3
        for m in r["metrics"].values():
            m["val"] = {m["primary"]: 0.95}
    new = [swept(make_record("hard-ew", s, {"imdb": 0.9}, tag="new"), 1e-3, 0.90) for s in range(2)]
    a = report.analyse("mini", old + new)
    (fam,) = a.tuning
    assert len(fam.groups) == 2 and fam.chosen.name == "hard-ew"   # the old default point wins on validation
    assert [g.name for g in a.groups] == ["hard-ew"]


def test_a_variant_with_extra_axes_is_one_family_and_the_report_states_its_larger_budget():
    """hard-ew's lr-only runs (dropout at its default) came before its extra dropout axis: one family of
    4 points, chosen on validation (dropout 0.3); STL has 2 points and the section says who had more."""
    recs = []
    for s in range(2):
        for lr, val in ((1e-3, 0.80), (2e-3, 0.85)):
            recs.append(swept(make_record("stl-imdb", s, {"imdb": 0.8}, tag=f"{lr}"), lr, val))
            recs.append(swept(make_record("hard-ew", s, {"imdb": 0.8}, tag=f"{lr}"), lr, val))
            r = swept(make_record("hard-ew", s, {"imdb": 0.9}, tag=f"{lr}d"), lr, val + 0.1)
            r["config"].setdefault("model", {})["dropout"] = 0.3
            r["config"]["sweep"]["axes"] = ["train.lr", "model.dropout"]
            recs.append(r)
    a = report.analyse("mini", recs)
    fams = {f.variant: f for f in a.tuning}
    assert fams["hard-ew"].axes == ("train.lr", "model.dropout") and len(fams["hard-ew"].groups) == 4
    assert fams["hard-ew"].chosen.name == "hard-ew (model.dropout=0.3)"   # lr 2e-3 is the default: no label
    tuning = section(report.readme(a, "mini/runs.jsonl", []), "Tuning: every sweep point")
    assert "`train.lr` (2 points) for every variant" in tuning
    assert "a larger budget for some: `train.lr`, `model.dropout` (4 points) for hard-ew" in tuning


def test_the_static_front_plot_and_the_labels_of_its_simplex_points(tmp_path):
    """Two static-front points of one weightless static variant are two groups (and two families),
    labelled by their weights; the pairwise front plot is drawn and shown with the standing baselines."""
    def pair(name, c, i, **kw):
        return [make_record(name, s, {"cifar10": c + d, "imdb": i + d}, **kw) for s, d in enumerate((-0.01, 0.01))]

    recs = [make_record(f"stl-{t}", s, {t: 0.70 + d}) for t in ("cifar10", "imdb") for s, d in enumerate((-0.01, 0.01))]
    recs += pair("hard-ew", 0.80, 0.80) + pair("hard-uw", 0.90, 0.78, weighting="uw")
    for w, (c, i) in (((1.5, 0.5), (0.86, 0.75)), ((0.5, 1.5), (0.75, 0.86))):
        for r in pair("hard-static", c, i, weighting="static", tag=f"{w[0]}"):
            r["config"]["weighting_args"] = {"static": {"cifar10": w[0], "imdb": w[1]}}
            recs.append(swept(r, 2e-3, 0.8))
    a = report.analyse("mini", recs)
    names = sorted(g.name for g in a.groups if g.variant == "hard-static")
    assert names == ["hard-static (w=0.5/1.5)", "hard-static (w=1.5/0.5)"]
    assert sorted(f.label for f in a.tuning) == names
    out = report.write_report(write_grid(tmp_path, recs) / "runs.jsonl", tmp_path / "report")
    assert (out.parent / "static_front.png").stat().st_size > 1000
    text = out.read_text()
    assert text.count("](static_front.png)") == 1
    assert "](static_front.png)" in section(text, "Standing baselines: EW, RLW and the static front")


def test_an_unfinished_tuning_is_flagged_in_the_summary_and_the_table():
    """The budget-saving protocol on 2 seeds: 1e-3 has both, 2e-3 only seed 0 — unfinished."""
    recs = [swept(make_record("hard-ew", 0, {"imdb": 0.8}, tag="a"), 1e-3, 0.80, tune_seeds=2),
            swept(make_record("hard-ew", 1, {"imdb": 0.8}, tag="a"), 1e-3, 0.80, tune_seeds=2),
            swept(make_record("hard-ew", 0, {"imdb": 0.8}, tag="b"), 2e-3, 0.85, tune_seeds=2)]
    a = report.analyse("mini", recs)
    text = report.readme(a, "mini/runs.jsonl", [])
    assert "**Tuning unfinished**: 1 of 1 tuned configurations" in text.split("## Setting")[0]
    assert "✓ so far" in section(text, "Tuning: every sweep point")
    recs.append(swept(make_record("hard-ew", 1, {"imdb": 0.8}, tag="b"), 2e-3, 0.85, tune_seeds=2))
    text = report.readme(report.analyse("mini", recs), "mini/runs.jsonl", [])
    assert "Tuning unfinished" not in text and "✓ so far" not in text


def in_words(summary: str) -> str:
    """The folded part of the summary: the verdict in words."""
    return summary.split("<summary>Every multi-task variant in words</summary>\n\n", 1)[1].split("\n\n</details>")[0]


def test_verdict_is_a_headline_then_one_bullet_per_variant_and_ahead_is_not_beat():
    """The verdict reads as a list (one bullet per MTL variant, the losers sharing the last), and an
    adaptive weighting whose Δm mean is above the best static point's, without a significant test, is
    'ahead of' it, 'not significant' — never said to beat it."""
    recs = [make_record("stl-cifar10", s, {"cifar10": v}) for s, v in enumerate([0.80, 0.82])]
    recs += [make_record("stl-imdb", s, {"imdb": v}) for s, v in enumerate([0.85, 0.87])]
    recs += [make_record("hard-ew", s, {"cifar10": c, "imdb": i})
             for s, (c, i) in enumerate([(0.90, 0.86), (0.91, 0.85)])]
    recs += [make_record("hard-uw", s, {"cifar10": c, "imdb": i}, weighting="uw")
             for s, (c, i) in enumerate([(0.92, 0.84), (0.89, 0.88)])]
    recs += [make_record("hard-rlw", s, {"cifar10": c, "imdb": i}, weighting="rlw")
             for s, (c, i) in enumerate([(0.70, 0.80), (0.71, 0.81)])]
    a = report.analyse("mini", recs)
    first = report.summary(a).split("\n\n")
    assert first[0].startswith("**Verdict**: the best multi-task variant over cifar10, imdb is uw (adaptive weighting)")
    assert table_row(first[2], None, "uw")[:2] == ["uw", "adaptive weighting"]   # the first screen's table
    paragraphs = in_words(report.summary(a)).split("\n\n")
    assert paragraphs[0].startswith("2 of 3 multi-task variants beat their matched STL baseline significantly")
    bullets = paragraphs[1].splitlines()
    assert [b.split(" ")[1] for b in bullets] == ["hard-uw", "hard-ew", "hard-rlw"]   # best Δm first
    assert all(b.startswith("- ") for b in bullets)
    assert bullets[-1].endswith("is ahead of STL on no task and has no positive Δm.")
    p = report.welch_p(a.dm_seeds["hard-uw"], a.dm_seeds["hard-ew"])
    assert p > 0.05
    assert paragraphs[2].startswith("1 of 2 adaptive weightings is ahead of the best static-sweep point, hard-ew")
    assert f"hard-uw (Δm {a.overall.set_index('name').loc['hard-uw', 'dm']:+.2f}%, Welch p = {p:.3f}, " \
           "not significant)" in paragraphs[2]
    assert "beat the best static" not in report.summary(a)


def test_a_chosen_point_at_an_end_of_a_numeric_axis_is_flagged():
    """Three learning rates: stl-imdb's best on validation is the middle one (no flag), hard-ew's the
    largest (flagged, in the Tuning section and the verdict's notes); with two values no end is flagged."""
    recs = []
    for s in range(2):
        for lr, stl_val, ew_val in ((1e-3, 0.70, 0.60), (2e-3, 0.90, 0.70), (4e-3, 0.80, 0.95)):
            recs.append(swept(make_record("stl-imdb", s, {"imdb": 0.8}, tag=f"{lr}"), lr, stl_val))
            recs.append(swept(make_record("hard-ew", s, {"imdb": 0.8}, tag=f"{lr}"), lr, ew_val))
    a = report.analyse("mini", recs)
    assert report.tuning.at_edge(a.tuning) == {("train.lr", 4e-3, "largest"): ["hard-ew"]}
    text = report.readme(a, "mini/runs.jsonl", [])
    tuning = section(text, "Tuning: every sweep point")
    assert ("**At the edge of the range**: for 1 of 2 tuned configurations the chosen point has the largest "
            "`train.lr` tried (0.004): hard-ew.") in tuning
    assert "sit at the edge of the range swept (`train.lr` = 0.004, the largest tried, for 1 of 2 tuned" \
           in report.summary(a)
    two = [r for r in recs if r["config"]["train"]["lr"] != 2e-3]
    assert report.tuning.at_edge(report.analyse("mini", two).tuning) == {}
    assert "At the edge" not in report.readme(report.analyse("mini", two), "mini/runs.jsonl", [])


def test_a_chosen_end_within_one_seed_std_of_its_neighbour_is_said_to_have_levelled_off():
    """hard-ew chosen at the largest lr: validation 0.95 / 0.91 there (mean 0.93, std 0.0283), 0.93 / 0.92 at the
    next value in (mean 0.925): a gain of +0.005, within one seed std: levelled off. stl-imdb chosen at the same
    end with a gain of +0.2 (no spread): its best may lie beyond."""
    recs = []
    vals = {"hard-ew": {1e-3: (0.60, 0.60), 2e-3: (0.93, 0.92), 4e-3: (0.95, 0.91)},
            "stl-imdb": {1e-3: (0.50, 0.50), 2e-3: (0.70, 0.70), 4e-3: (0.90, 0.90)}}
    for variant, by_lr in vals.items():
        for lr, seeds in by_lr.items():
            for s, v in enumerate(seeds):
                recs.append(swept(make_record(variant, s, {"imdb": 0.8}, tag=f"{lr}",
                                              architecture="single" if variant.startswith("stl") else "hard"), lr, v))
    a = report.analyse("mini", recs)
    tuning = section(report.readme(a, "mini/runs.jsonl", []), "Tuning: every sweep point")
    line = next(p for p in tuning.split("\n\n") if p.startswith("**At the edge of the range**"))
    assert "for 2 of 2 tuned configurations the chosen point has the largest `train.lr` tried (0.004)" in line
    assert ("For 1 of them the validation score there is within one seed std of the next value in (gain hard-ew "
            "+0.0050 (seed std 0.0283)): the curve has levelled off at the end") in line
    assert "The others' best may lie beyond the range swept (gain over the next value in: stl-imdb +0.2000" in line
    assert ("`train.lr` = 0.004, the largest tried, for 2 (1 of them levelled off there) of 2 tuned configurations): "
            "a wider axis could still move the 1 whose score still rises there") in report.summary(a)


def test_sensitivity_plot_has_a_panel_per_variant_with_a_line_per_other_axis_value():
    """hard-ew at 3 learning rates × 2 dropouts, stl-imdb at 3 learning rates: two panels, log-scaled lr
    (8× span), hard-ew's with two validation lines (one per dropout) and its chosen point ringed."""
    from lepton_bench.report.plots import sensitivity_figure

    recs = []
    for s in range(2):
        for lr in (1e-3, 2e-3, 8e-3):
            recs.append(swept(make_record("stl-imdb", s, {"imdb": 0.8}, tag=f"{lr}"), lr, 0.8 + lr))
            for d in (0.1, 0.3):
                r = swept(make_record("hard-ew", s, {"imdb": 0.8}, tag=f"{lr}-{d}"), lr, 0.9 - d + lr)
                r["config"].setdefault("model", {})["dropout"] = d
                r["config"]["sweep"]["axes"] = ["train.lr", "model.dropout"]
                recs.append(r)
    a = report.analyse("mini", recs)
    fig = sensitivity_figure(a)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["hard-ew", "stl-imdb"]
    assert all(ax.get_xscale() == "log" for ax in panels)
    solid = [line for line in panels[0].lines if line.get_linestyle() == "-"]
    assert [line.get_label() for line in solid] == ["dropout=0.1", "dropout=0.3"]
    assert list(solid[0].get_xdata()) == [1e-3, 2e-3, 8e-3]
    ring = [line for line in panels[0].lines if line.get_markersize() == 9]
    assert len(ring) == 1 and list(ring[0].get_xdata()) == [8e-3]   # chosen: lr 8e-3, dropout 0.1
    only_lr = [r for r in recs if r["variant"] == "stl-imdb"]
    assert sensitivity_figure(report.analyse("mini", only_lr[::3])) is None   # one point, 2 seeds: nothing


def test_plot_labels_drop_the_prefix_and_the_setting_every_name_shares():
    from lepton_bench.report.plots import short_names

    names = ["tagging-hard-uw (train.lr=0.004)", "tagging-hard-static (w=1.8/0.6/0.6, train.lr=0.004)",
             "tagging-ner-aux-pos-w0.1 (train.lr=0.004)"]
    assert short_names(names) == (["hard-uw", "hard-static (w=1.8/0.6/0.6)", "ner-aux-pos-w0.1"], "tagging-")
    assert short_names(["hard-ew", "hard-uw (train.lr=0.004)"]) == (["ew", "uw (train.lr=0.004)"], "hard-")
    assert short_names(["stl-imdb"]) == (["stl-imdb"], "")


def test_the_first_screen_is_one_table_of_the_best_of_each_family_and_one_verdict():
    """EW, the best static point, the best adaptive weighting and an architecture each get a row; Δm by hand;
    a cheaper, better static point puts a method behind the front; labels drop the shared prefix."""
    recs = [make_record("stl-cifar10", s, {"cifar10": v}, train_seconds=50.0) for s, v in enumerate([0.80, 0.82])]
    recs += [make_record("stl-imdb", s, {"imdb": v}, train_seconds=50.0) for s, v in enumerate([0.85, 0.87])]
    both = {"hard-ew": ("ew", [(0.82, 0.87), (0.84, 0.85)], 50.0),
            "hard-static-imdbx2": ("static", [(0.84, 0.88), (0.86, 0.88)], 50.0),
            "hard-uw": ("uw", [(0.83, 0.87), (0.85, 0.87)], 60.0),          # worse and dearer than static: behind
            "hard-pcgrad": ("pcgrad", [(0.70, 0.80), (0.72, 0.80)], 150.0),  # adaptive too, worse: not shown
            "hard-famo": ("famo", [(0.70, 0.80), (0.72, 0.80)], 150.0)}
    for name, (w, vals, secs) in both.items():
        recs += [make_record(name, s, {"cifar10": c, "imdb": i}, weighting=w, train_seconds=secs)
                 for s, (c, i) in enumerate(vals)]
    recs += [make_record("mmoe-ew", s, {"cifar10": c, "imdb": i}, architecture="mmoe", train_seconds=80.0)
             for s, (c, i) in enumerate([(0.81, 0.86), (0.83, 0.86)])]
    a = report.analyse("mini", recs)
    first = report.summary(a).split("<details>")[0]
    rows = {r[0]: r for r in (c for c in ([x.strip() for x in line.strip("|").split("|")]
                                          for line in first.splitlines() if line.startswith("| ")))
            if r[0] not in ("variant",) and not r[0].startswith("-")}
    assert set(rows) == {"hard-ew", "hard-static-imdbx2", "hard-uw", "mmoe-ew"}   # pcgrad, famo: not the best
    assert [rows[n][1] for n in ("hard-ew", "hard-static-imdbx2", "hard-uw", "mmoe-ew")] == \
        ["equal weights", "static weights", "adaptive weighting", "architecture mmoe"]
    dm_static = ((0.85 - 0.81) / 0.81 + (0.88 - 0.86) / 0.86) / 2 * 100
    assert rows["hard-static-imdbx2"][2].startswith(f"{dm_static:+.2f}% ± ") and rows["hard-ew"][2].endswith("(all)")
    assert [rows[n][-1] for n in ("hard-ew", "hard-static-imdbx2", "hard-uw")] == ["behind", "on", "behind"]
    assert rows["hard-uw"][5] == "0.60×"   # 60 s against the two STL runs' 50 + 50 s
    assert first.startswith(f"**Verdict**: the best multi-task variant over cifar10, imdb is hard-static-imdbx2 "
                            f"(static weights), Δm {dm_static:+.2f}% ± ")
    assert "(within noise of zero) at 0.50× the STL models' training time" in first


def test_a_long_table_is_folded_and_labels_drop_what_every_row_shares():
    from lepton_bench.report.format import FOLD_ROWS, folded_table, short_names

    rows = [[f"v{i}", "1"] for i in range(FOLD_ROWS + 1)]
    assert folded_table(["a", "b"], rows).startswith(f"<details><summary>The table ({FOLD_ROWS + 1} rows)</summary>")
    assert not folded_table(["a", "b"], rows[:FOLD_ROWS]).startswith("<details>")
    names = ["tagging-hard-uw (train.lr=0.004)", "tagging-hard-static (w=1/2, train.lr=0.004)"]
    assert short_names(names) == (["uw", "static (w=1/2)"], "tagging-hard-")


def test_a_grid_sets_its_contrast_grids_answer_beside_its_own(tmp_path):
    """The pretrained grid declares tagging as its contrast: its first screen says whether MTL helps here
    (EW clearly ahead of STL on every task) and what the tagging grid's records say, once they exist."""
    pre = [make_record(f"pretrained-stl-{t}", s, {t: v + s / 100}, architecture="single")
           for t, v in zip(TAGGING, (0.80, 0.93, 0.87), strict=True) for s in range(3)]
    pre += [make_record("pretrained-hard-ew", s, {"conll2003": 0.85 + s / 100, "conll2003_pos": 0.96 + s / 100,
                                                  "conll2003_chunk": 0.92 + s / 100}) for s in range(3)]
    folder = write_grid(tmp_path, pre, name="pretrained")
    alone = report.write_report(folder, tmp_path / "alone").read_text()
    assert "Against `tagging`" not in alone   # no tagging records beside it yet
    write_grid(tmp_path, tagging_records(), name="tagging")
    text = report.write_report(folder, tmp_path / "out").read_text()
    first_screen = text.split("## Setting")[0]
    line = next(p for p in first_screen.split("\n\n") if p.startswith("**Against `tagging`**"))
    assert "multi-task learning helps here (best Δm +" in line
    assert "in `tagging` (best Δm " in line and "equal weights +" in line
    assert "[its report](../tagging/README.md)" in line


def test_a_grid_without_search_axes_says_its_learning_rate_is_not_tuned():
    recs = tagging_records()
    for r in recs:
        r["config"]["train"]["lr"] = 0.002
    text = section(report.readme(report.analyse("tagging", recs), "tagging/runs.jsonl", []), "Setting")
    assert "- Learning rate: not tuned, every variant at `train.lr` = 0.002" in text
    assert "a ranking here holds at this rate" in text
