"""The report on records written by real training runs (tiny models, real data slices)."""

from __future__ import annotations

import math

import pytest

from lepton_bench import report
from lepton_bench.results import append_record
from lepton_bench.run.train import run
from lepton_bench.variants import make_config

from .conftest import TINY
from .test_report import table_row

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """(results folder, records) of stl-imdb, stl-conll2003 and hard-ew on both, 2 seeds each, 4 steps."""
    folder = tmp_path_factory.mktemp("e2e") / "results" / "e2e"
    runs = [("stl-imdb", None), ("stl-conll2003", None), ("hard-ew", ["imdb", "conll2003"])]
    records = []
    for variant, tasks in runs:
        for s in SEEDS:
            cfg = make_config(variant, tasks, seed=s, overrides=[*TINY, "train.steps=4", "train.diagnose_every=2"],
                              device="cpu", data_dir=str(data_dir), limit_eval=24)
            rec = run(cfg)
            assert rec["status"] == "ok"
            append_record(folder / "runs.jsonl", rec)
            records.append(rec)
    return folder, records


def test_report_of_real_runs(trained, tmp_path):
    folder, records = trained
    path = report.write_report(folder, tmp_path / "out")
    text = path.read_text()
    assert text.startswith("# lepton_bench report: e2e\n") and "6 in `e2e/runs.jsonl`, 6 ok, 0 failed" in text
    for task in ("imdb", "conll2003"):
        assert table_row(text, task, f"stl-{task} (STL)")[1] == "2"
        assert table_row(text, task, "hard-ew")[1] == "2"
    # Δm of hard-ew by hand, from the records: per seed, mean over tasks of the mean relative change
    stl = {t: {k: sum(r["metrics"][t]["test"][k] for r in records if r["variant"] == f"stl-{t}") / len(SEEDS)
               for k in records[0 if t == "imdb" else 2]["metrics"][t]["test"]} for t in ("imdb", "conll2003")}
    per_seed = []
    for r in (r for r in records if r["variant"] == "hard-ew"):
        rel = [sum((r["metrics"][t]["test"][k] - m) / m * 100 for k, m in stl[t].items()) / len(stl[t])
               for t in stl if all(m != 0 for m in stl[t].values())]
        per_seed.append(sum(rel) / len(rel))
    a = report.analyse("e2e", report.load_records(folder / "runs.jsonl"))
    row = a.overall.set_index("name").loc["hard-ew"]
    assert math.isfinite(row["dm"]) and row["dm"] == pytest.approx(sum(per_seed) / len(per_seed))
    assert math.isfinite(row["train_ratio"]) and row["params_ratio"] > 0
    overall = text.split("## Overall")[1].split("\n## ")[0]
    dm_cell = next(line for line in overall.splitlines() if line.startswith("| hard-ew")).split("|")[4].strip()
    assert dm_cell.strip("*").startswith(f"{row['dm']:+.2f} ± ")
    assert "STL models together: stl-imdb, stl-conll2003" in text
    assert "## The articles' claims" not in text      # stl-* and hard-ew declare no published figures
    why = text.split("## Why: gradient conflict and task affinity")[1].split("\n## ")[0]
    assert "| hard-ew | 4 | imdb·conll2003 " in why and "TAG would train" in why   # 2 measurements x 2 seeds
    for name in report.PLOT_FILES:
        if name == "sensitivity.png":   # drawn only for a grid with search axes
            assert not (path.parent / name).exists() and "## Tuning" not in text
            continue
        if name == "static_front.png":  # drawn only for a static sweep with a method to place against it
            assert not (path.parent / name).exists() and "## Standing baselines" not in text
            continue
        if name == "budget_curve.png":  # drawn only where a task's label budget varies
            assert not (path.parent / name).exists() and "label budget" not in text
            continue
        assert (path.parent / name).stat().st_size > 1000 and f"]({name})" in text
