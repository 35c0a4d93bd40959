import json

import pytest

from lepton_bench.results import RECORD_KEYS, SCHEMA_VERSION, append_record, read_records


def record(**kw):
    r = {k: None for k in RECORD_KEYS}
    r.update(schema_version=SCHEMA_VERSION, run_id="r", status="ok", metrics={"a": {"x": 1.0}})
    r.update(kw)
    return r


def test_append_and_read(tmp_path):
    path = tmp_path / "sub" / "runs.jsonl"
    append_record(path, record(run_id="a"))
    append_record(path, record(run_id="b", metrics={"t": {"loss": float("nan")}}))
    recs = read_records(path)
    assert [r["run_id"] for r in recs] == ["a", "b"]
    assert recs[1]["metrics"]["t"]["loss"] is None   # NaN is not JSON: written as null


def test_torn_line_is_skipped_and_next_record_starts_fresh(tmp_path):
    path = tmp_path / "runs.jsonl"
    append_record(path, record(run_id="a"))
    with open(path, "a") as f:
        f.write('{"schema_version": 1, "run_id": "tor')   # a writer killed mid-line
    append_record(path, record(run_id="c"))
    with pytest.warns(UserWarning, match="torn"):
        recs = read_records(path)
    assert [r["run_id"] for r in recs] == ["a", "c"]
    assert all(json.loads(line) for line in path.read_text().splitlines()[::2])


def test_incomplete_record_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        append_record(tmp_path / "r.jsonl", {"run_id": "x"})
    assert not (tmp_path / "r.jsonl").exists()


def test_training_curves_keep_float32_precision():
    from lepton_bench.results import compact_curves

    curves = {"train_loss": [{"step": 25, "lr": 0.0005200000000000001, "imdb": 1.3158479309082032,
                              "weights": {"imdb": 0.05424382537603378}}], "val": [{"step": 50, "imdb": float("nan")}]}
    out = compact_curves(curves)
    row = out["train_loss"][0]
    assert row == {"step": 25, "lr": 0.00052, "imdb": 1.315848, "weights": {"imdb": 0.05424383}}
    assert abs(row["imdb"] - 1.3158479309082032) < 1e-6 and out["val"][0]["imdb"] != out["val"][0]["imdb"]
