"""benchmarks/device_check.py at smoke size on CPU, as CI runs it: every check passes and the JSON it
writes has the schema a GPU run fills (so the one-shot GPU check cannot rot)."""

from __future__ import annotations

import json

from benchmarks.device_check import SMOKE_VARIANTS, main


def test_device_check_at_smoke_size_writes_its_json(tmp_path, data_dir, capsys):
    # no time budget: a test asserts behaviour, and a loaded machine must not skip checks
    assert main(["--device", "cpu", "--data-dir", str(data_dir), "--out", str(tmp_path), "--budget", "1e9"]) == 0
    (path,) = tmp_path.glob("cpu-*-device_check.json")
    out = json.loads(path.read_text())
    assert out["schema"] == 1 and out["ok"] and out["smoke"] and out["env"]["device"] == "cpu"
    checks = out["checks"]
    assert [c["variant"] for c in checks["variants"]] == list(SMOKE_VARIANTS)
    for c in checks["variants"] + checks["compiled"]:
        assert c["ok"] and c["finite"] and all(c["moved"].values()) and c["step_ms"] > 0, c
    (compiled,) = checks["compiled"]   # on CPU torch.compile is not used: the run says so
    assert not compiled["compiled"] and any("CUDA only" in n for n in compiled["notes"])
    assert checks["record"]["ok"] and all(checks["record"]["plausible"].values())
    assert checks["record"]["precision"] == "fp32" and checks["record_compiled"]["compiled"] is False
    assert checks["overhead"]["overhead_ratio"] > 0
    assert set(checks["data"]["inputs"]) == {"stl-cifar10", "stl-imdb", "stl-conll2003"}
    packed = checks["packed"]
    assert packed["runs"] == 2 and packed["failed"] == 0
    assert sorted(p["slot"] for p in packed["packed"]) == [0, 1]
    assert all(p["runs_per_device"] == 2 and p["device"] == "cpu" for p in packed["packed"])
    assert "ok in" in capsys.readouterr().out
