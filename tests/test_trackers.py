"""Experiment trackers (trackers.py), offline: one tiny real run logged to every tracker through the CLI and
read back with each tracker's own reader — TensorBoard's EventAccumulator, the W&B offline run's transaction
log (wandb's protobuf records), MLflow's client on the local file store — a tracker that fails mid-run, a
grid whose runs are one tracker run each, named by run id, and the errors: a missing package, an unknown
name."""

from __future__ import annotations

import json
import math
import struct
import sys
import warnings
from pathlib import Path

import pytest

from lepton_bench.cli import main
from lepton_bench.config import from_dict
from lepton_bench.errors import ConfigError
from lepton_bench.grid.plan import plan
from lepton_bench.results import read_records, run_id
from lepton_bench.run.trackers import TRACKERS, Tracker, TrackerWarning, check, close_trackers, fan_out
from lepton_bench.variants import make_config

from .conftest import TINY

SETS = [a for o in [*TINY, "train.diagnose_every=2"] for a in ("--set", o)]
STEPS = [1, 2, 3, 4]   # train.log_every=1, 4 steps
EVALS = [2, 4]         # train.eval_every=2
MEASURED = [2, 4]      # train.diagnose_every=2


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory):
    """Trackers offline whatever this machine's environment says, their own files under a temporary folder."""
    home = tmp_path_factory.mktemp("tracker-home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(var, raising=False)
        # absent during the tests (the mlflow tracker sets it for its own file store), and after them
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "")
        mp.delenv("MLFLOW_ALLOW_FILE_STORE")
        for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(home / var.lower()))
        mp.setenv("WANDB_SILENT", "true")
        yield mp


class Flaky(Tracker):
    """A tracker that fails at its second scalar write: the run must go on to its record."""

    name, module, extra = "flaky", "json", "none"

    def start(self, run_name, cfg, log_dir):
        self.logged, self.finished = [], None

    def log(self, values, step):
        if step >= 2:
            raise RuntimeError("the tracker's server went away")
        self.logged.append(step)

    def finish(self, record, final, params):
        self.finished = (record, final, params)


@pytest.fixture(scope="module")
def logged(data_dir, tmp_path_factory, offline_env):
    """One tiny real run of hard-ew (three tasks, diagnostics every 2 steps) by the CLI, logged to every
    tracker and to a flaky one; returns (record, log dir, the flaky tracker, the tracker warnings)."""
    import lepton_bench.run.trackers as trackers

    out = tmp_path_factory.mktemp("tracked")
    real, flaky = trackers.open_trackers, []

    def with_flaky(cfg, run_name=None):
        flaky.append(Flaky().open(run_name or run_id(cfg), cfg, cfg.log_dir))
        return [*real(cfg, run_name), flaky[0]]

    offline_env.setattr(trackers, "open_trackers", with_flaky)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["run", "--variant", "hard-ew", "--data-dir", str(data_dir), "--out", str(out), "--no-progress",
                     "--device", "cpu", "--steps", "4", "--limit-eval", "24", *SETS,
                     *(a for name in TRACKERS.list() for a in ("--log", name))])
    offline_env.setattr(trackers, "open_trackers", real)
    assert code == 0
    [record] = read_records(out / "runs.jsonl")
    return record, out / "trackers", flaky[0], [w for w in caught if issubclass(w.category, TrackerWarning)]


def _approx(v):
    return pytest.approx(v, rel=1e-5, abs=1e-7)   # TensorBoard keeps float32


def test_a_tracker_failing_mid_run_is_warned_about_once_and_the_run_keeps_its_record(logged):
    record, _, flaky, caught = logged
    assert record["status"] == "ok" and record["metrics"]
    assert flaky.logged == [1]   # nothing after the failure
    assert flaky.failed == "RuntimeError: the tracker's server went away"
    assert flaky.finished == (None, {}, {})   # still ended (as failed), without figures
    assert len(caught) == 1
    assert str(caught[0].message).startswith(f"--log flaky failed at step 2 of run {record['run_id']}")


def test_the_run_id_and_the_config_hash_ignore_log_and_log_dir(logged):
    record = logged[0]
    assert record["config"]["log"] == TRACKERS.list() and record["config"]["log_dir"].endswith("trackers")
    cfg = from_dict(record["config"])
    assert cfg.log == tuple(TRACKERS.list())   # JSON's list back to the tuple
    bare = from_dict({**record["config"], "log": [], "log_dir": None})
    assert run_id(cfg) == run_id(bare) == record["run_id"]
    assert make_config("hard-ew", log=("tensorboard", "wandb"), log_dir="/elsewhere").config_hash() == \
        make_config("hard-ew").config_hash()
    with_log = plan("smoke", variants="hard-*", log=("mlflow",), log_dir="x")
    assert [r.run_id for r in with_log] == [r.run_id for r in plan("smoke", variants="hard-*")]
    assert all(r.config.log == ("mlflow",) and r.config.log_dir == "x" for r in with_log)


def _tensorboard(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path))
    acc.Reload()

    def scalars(tag):
        return {e.step: e.value for e in acc.Scalars(tag)}

    return set(acc.Tags()["scalars"]), scalars


def test_tensorboard_event_files_read_back_with_its_own_reader(logged):
    record, log_dir, _, _ = logged
    path = log_dir / "tensorboard" / record["run_id"]
    assert path.is_dir()
    tags, scalars = _tensorboard(path)
    curve = record["curves"]["train_loss"]
    for task in record["tasks"]:
        assert scalars(f"loss/{task}") == {p["step"]: _approx(p[task]) for p in curve}
        assert scalars(f"weight/{task}") == {p["step"]: _approx(p["weights"][task]) for p in curve}
        assert list(scalars(f"grad_norm/{task}")) == MEASURED
        for metric, value in record["metrics"][task]["test"].items():
            assert scalars(f"test/{task}/{metric}") == {4: _approx(value)}
        primary = record["metrics"][task]["primary"]
        assert scalars(f"val/{task}/{primary}") == {p["step"]: _approx(p[task][primary])
                                                    for p in record["curves"]["val"]}
    assert scalars("lr") == {p["step"]: _approx(p["lr"]) for p in curve}
    first, second = record["tasks"][:2]
    assert list(scalars(f"cosine/{first}/{second}")) == MEASURED and f"cosine/{second}/{first}" not in tags
    assert f"affinity/{second}/{first}" in tags
    assert scalars("cost/train_seconds") == {4: _approx(record["cost"]["train_seconds"])}
    assert scalars("cost/memory/peak_rss_mb") == {4: _approx(record["cost"]["memory"]["peak_rss_mb"])}
    hparams = _hparams(path)   # the config, in the hparams plugin's session
    assert hparams["train.lr"] == _approx(record["config"]["train"]["lr"]) and hparams["variant"] == "hard-ew"
    assert hparams["log"] == json.dumps(TRACKERS.list())


def _hparams(path: Path) -> dict:
    """The hparams of a run's session, as TensorBoard's hparams plugin reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(path))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    return {k: v.string_value or v.number_value or v.bool_value for k, v in data.session_start_info.hparams.items()}


def wandb_records(path: Path) -> list:
    """The records of a W&B offline run's transaction log ``run-<id>.wandb``: a ``:W&B`` header, then
    LevelDB log blocks (32 KiB; 7-byte headers: checksum, length, type full/first/middle/last) holding
    wandb's own protobuf ``Record``s (``wandb.proto.wandb_internal_pb2``), which ``wandb sync`` uploads."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw, block = path.read_bytes(), 32768
    assert raw[:4] == b":W&B"
    pos, data, out = 7, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:   # too little room for a header: the block's zero padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if length == 0 and kind == 0:   # padding to the block's end
            pos += left
            continue
        chunk, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        data = chunk if kind in (1, 2) else data + chunk
        if kind in (1, 4):
            r = pb.Record()
            r.ParseFromString(data)
            out.append(r)
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_reads_back(logged):
    record, log_dir, _, _ = logged
    [run_dir] = (log_dir / "wandb").glob("offline-run-*")
    assert (run_dir / "files").is_dir()
    [log] = run_dir.glob("run-*.wandb")
    records = wandb_records(log)
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == record["run_id"] and run.project == "lepton_bench"
    config = {_key(i): json.loads(i.value_json) for i in run.config.update}
    assert config["train"]["lr"] == record["config"]["train"]["lr"] and config["variant"] == "hard-ew"
    rows: dict[int, dict] = {}   # step -> what was logged at it
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {_key(i): json.loads(i.value_json) for i in r.history.item}
            rows.setdefault(row["_step"], {}).update(row)
    assert sorted(rows) == STEPS
    task = record["tasks"][0]
    assert [rows[p["step"]][f"loss/{task}"] for p in record["curves"]["train_loss"]] == \
        [pytest.approx(p[task]) for p in record["curves"]["train_loss"]]
    assert all(f"grad_norm/{task}" in rows[s] for s in MEASURED) and f"val/{task}/entity_f1" not in rows[1]
    summary: dict = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
            for i in r.summary.remove:
                summary.pop(_key(i), None)
    summary_file = run_dir / "files" / "wandb-summary.json"   # wandb versions that write it offline
    if summary_file.exists():
        summary.update(json.loads(summary_file.read_text()))
    for t in record["tasks"]:
        for metric, value in record["metrics"][t]["test"].items():
            assert summary[f"test/{t}/{metric}"] == pytest.approx(value)
    assert summary["cost/steps_per_s"] == pytest.approx(record["cost"]["steps_per_s"])
    assert summary[f"loss/{task}"] == pytest.approx(record["curves"]["train_loss"][-1][task])
    [end] = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert end.exit_code == 0


def test_mlflow_file_store_reads_back_with_its_client(logged):
    from mlflow.tracking import MlflowClient

    record, log_dir, _, _ = logged
    store = log_dir / "mlruns"
    assert store.is_dir()
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("lepton_bench")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == record["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["lepton_bench.run_id"] == record["run_id"]
    assert run.data.params["train.lr"] == str(record["config"]["train"]["lr"])
    assert run.data.params["variant"] == "hard-ew" and run.data.params["log"] == json.dumps(TRACKERS.list())
    curve = record["curves"]["train_loss"]
    for task in record["tasks"]:
        history = client.get_metric_history(run.info.run_id, f"loss/{task}")
        assert {m.step: m.value for m in history} == {p["step"]: pytest.approx(p[task]) for p in curve}
        assert [m.step for m in client.get_metric_history(run.info.run_id, f"grad_norm/{task}")] == MEASURED
        for metric, value in record["metrics"][task]["test"].items():
            assert run.data.metrics[f"test/{task}/{metric}"] == pytest.approx(value)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/score")] == EVALS
    assert run.data.metrics["cost/train_seconds"] == pytest.approx(record["cost"]["train_seconds"])
    assert math.isclose(run.data.metrics["lr"], curve[-1]["lr"], rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize("name", TRACKERS.list())
def test_every_tracker_ends_a_failed_run_without_figures(name, tmp_path, offline_env):
    cfg = make_config("hard-ew", log=(name,), log_dir=str(tmp_path))
    tracker = TRACKERS.get(name)().open("failed-run", cfg, tmp_path)
    say = fan_out(None, [tracker])
    say("step", {"step": 1, "losses": {"imdb": 0.7}, "lr": 1e-3, "weights": {"imdb": 1.0}, "diagnostics": []})
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackerWarning)
        close_trackers([tracker], None)
    assert tracker.failed is None and any(tmp_path.iterdir())


@pytest.mark.parametrize("name", TRACKERS.list())
def test_a_missing_package_is_one_line_naming_the_extra(name, monkeypatch, tmp_path, capsys):
    module = TRACKERS.get(name).module
    monkeypatch.setitem(sys.modules, module, None)   # import fails as if not installed
    message = f"--log {name} needs the {module} package: pip install 'lepton-bench[{TRACKERS.get(name).extra}]'"
    with pytest.raises(ConfigError) as e:
        check([name])
    assert str(e.value) == message
    for how in (["--variant", "hard-ew"], ["--grid", "smoke"]):   # before anything runs or is written
        assert main(["run", *how, "--out", str(tmp_path), "--log", name, "--no-progress"]) == 2
        assert capsys.readouterr().err == f"lepton-bench: error: {message}\n"
    assert not any(tmp_path.iterdir())


def test_an_unknown_tracker_gets_close_matches(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown tracker 'tensorbord'; did you mean tensorboard\?"):
        check(["tensorbord"])
    assert main(["run", "--variant", "hard-ew", "--out", str(tmp_path), "--log", "mlfow"]) == 2
    assert "unknown tracker 'mlfow'; did you mean mlflow?" in capsys.readouterr().err
    assert main(["run", "--variant", "hard-ew", "--out", str(tmp_path), "--log-dir", str(tmp_path)]) == 2
    assert "--log-dir needs --log" in capsys.readouterr().err
    assert main(["list", "trackers"]) == 0
    listed = capsys.readouterr().out
    assert all(f"| {name} " in listed for name in ("tensorboard", "wandb", "mlflow"))


def test_each_run_of_a_grid_is_one_tracker_run_named_by_its_run_id(data_dir, tmp_path, offline_env):
    two = "stl-conll2003,stl-imdb"
    args = ["run", "--grid", "smoke", "--variants", two, "--data-dir", str(data_dir), "--out", str(tmp_path),
            "--no-progress", *(a for o in [*TINY, "train.steps=2"] for a in ("--set", o)), "--log", "tensorboard"]
    assert main(args) == 0
    records = read_records(tmp_path / "smoke" / "runs.jsonl")
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    root = tmp_path / "smoke" / "trackers" / "tensorboard"
    assert sorted(p.name for p in root.iterdir()) == sorted(r["run_id"] for r in records)
    for r in records:
        [task] = r["tasks"]
        tags, scalars = _tensorboard(root / r["run_id"])
        assert list(scalars(f"loss/{task}")) == [1, 2]
        primary = r["metrics"][task]["primary"]
        assert scalars(f"test/{task}/{primary}") == {2: _approx(r["metrics"][task]["test"][primary])}
