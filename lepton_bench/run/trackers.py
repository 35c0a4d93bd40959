"""Experiment trackers, optional extras: TensorBoard, Weights & Biases, MLflow (``--log NAME``).

A tracker is a ``Progress`` callback (``tracker(event, info)``) that logs a run's scalars at the
event's step — per-task losses, learning rate and task weights at every loss read, the diagnostics
read with them (gradient norms, cosines, affinities: at the step they were measured), validation
metrics — and, at ``close(record)``, the record's final test and best-validation metrics, its cost
figures and its flattened config. One run of lepton_bench is one tracker run, named by its run id
(``results.run_id``). Every tracker works offline: TensorBoard writes event files, W&B runs in
offline mode unless ``WANDB_MODE`` says otherwise, MLflow writes a local file store unless
``MLFLOW_TRACKING_URI`` points elsewhere; all under the log directory (``RunConfig.log_dir``).

Trackers are never in the way of a run: a missing package is one ``ConfigError`` line before training
starts (``check``), and a tracker that fails mid-run is warned about once and left out of the rest of
the run, which goes on to its record. Nothing here imports a tracker's package until it is opened.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import flatten
from ..errors import ConfigError
from ..registry import Registry

if TYPE_CHECKING:
    from ..config import RunConfig
    from .setup import Progress

DEFAULT_LOG_DIR = "results/adhoc/trackers"   # a run made outside the CLI without cfg.log_dir


class TrackerWarning(UserWarning):
    """A tracker failed mid-run: it logs nothing more of the run, which goes on."""


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def event_scalars(event: str, info: dict) -> list[tuple[int, dict[str, float]]]:
    """The scalars of one progress event, as ``[(step, {name: value})]`` in step order: "step" gives
    ``loss/<task>``, ``lr``, ``weight/<task>`` and the diagnostics read at that log, each at the step
    it was measured (``grad_norm/<task>``, ``cosine/<i>/<j>`` once per pair, ``affinity/<i>/<j>``);
    "eval" gives ``val/<task>/<metric>`` and ``val/score``. Other events log nothing."""
    out: list[tuple[int, dict[str, float]]] = []
    if event == "step":
        for d in info.get("diagnostics") or ():
            values = {f"grad_norm/{t}": v for t, v in d.get("grad_norm", {}).items()}
            seen = set()
            for i, row in d.get("cosine", {}).items():
                for j, v in row.items():
                    if (j, i) not in seen:
                        seen.add((i, j))
                        values[f"cosine/{i}/{j}"] = v
            values.update({f"affinity/{i}/{j}": v for i, row in d.get("affinity", {}).items() for j, v in row.items()})
            out.append((d["step"], values))
        values = {f"loss/{t}": v for t, v in info.get("losses", {}).items()}
        if info.get("lr") is not None:
            values["lr"] = info["lr"]
        values.update({f"weight/{t}": v for t, v in (info.get("weights") or {}).items()})
        out.append((info["step"], values))
    elif event == "eval":
        values = {f"val/{t}/{m}": v for t, ms in info.get("val", {}).items() for m, v in ms.items()}
        values["val/score"] = info["score"]
        out.append((info["step"], values))
    out = [(s, {k: float(v) for k, v in vs.items() if _number(v)}) for s, vs in out]
    return sorted(out, key=lambda sv: sv[0])


def final_scalars(record: dict) -> dict[str, float]:
    """A finished record's figures: ``test/<task>/<metric>``, ``best_val/<task>/<metric>``,
    ``best_val/score``, ``best_step`` and every number of its cost (``cost/train_seconds``,
    ``cost/steps_per_s``, ``cost/memory/peak_rss_mb``, ``cost/params/total``, ``cost/tasks/<task>/...``)."""
    out: dict[str, float] = {}
    for task, m in (record.get("metrics") or {}).items():
        out.update({f"test/{task}/{k}": v for k, v in m.get("test", {}).items()})
        out.update({f"best_val/{task}/{k}": v for k, v in m.get("val", {}).items()})
    selection = record.get("selection") or {}
    out.update({"best_val/score": selection.get("best_val_score"), "best_step": selection.get("best_step")})
    out.update(_leaves(record.get("cost") or {}, "cost/"))
    return {k: float(v) for k, v in out.items() if _number(v)}


def _leaves(d: dict, prefix: str) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"<prefix>a/b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_params(config: dict) -> dict[str, int | float | str | bool]:
    """A config dict flattened to dotted keys with plain values (hparams, params): a tuple as its JSON
    list, None as "None"."""
    out: dict[str, int | float | str | bool] = {}
    for k, v in flatten(config).items():
        out[k] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v) if isinstance(v, tuple) else str(v)
    return out


class Tracker(ABC):
    """One tracker run. Subclasses set ``module`` (the package imported to use it) and ``extra`` (the pip
    extra that installs it) and implement ``start``, ``log`` and ``finish``; the public ``open``,
    ``__call__`` (a ``Progress``) and ``close`` are the base's, and keep a failure out of the run."""

    name = ""
    module = ""
    extra = ""

    def __init__(self) -> None:
        self.run_name = ""
        self.failed: str | None = None   # why it stopped logging, once it failed
        self.last_step = 0

    @classmethod
    def check(cls) -> None:
        """Import the package the tracker needs, or say in one line how to install it."""
        try:
            importlib.import_module(cls.module)
        except ImportError:
            raise ConfigError(f"--log {cls.name} needs the {cls.module} package: "
                              f"pip install 'lepton-bench[{cls.extra}]'") from None

    # ---- what a tracker implements
    @abstractmethod
    def start(self, run_name: str, cfg: RunConfig, log_dir: Path) -> None:
        """Begin the tracker run ``run_name``, writing under ``log_dir``."""

    @abstractmethod
    def log(self, values: dict[str, float], step: int) -> None:
        """Log scalars at ``step``."""

    @abstractmethod
    def finish(self, record: dict | None, final: dict[str, float], params: dict[str, Any]) -> None:
        """Log ``final`` (a finished run's figures) and ``params`` (its flattened config) and end the
        tracker run, as failed when ``record`` is None or failed."""

    # ---- what a run calls
    def open(self, run_name: str, cfg: RunConfig, log_dir: str | Path) -> Tracker:
        """Start the tracker run (before training: a failure here is a ``ConfigError``)."""
        self.check()
        self.run_name = run_name
        try:
            self.start(run_name, cfg, Path(log_dir))
        except Exception as e:
            raise ConfigError(f"--log {self.name} could not start run {run_name}: {_first_line(e)}") from None
        return self

    def __call__(self, event: str, info: dict) -> None:
        if self.failed:
            return
        try:
            for step, values in event_scalars(event, info):
                if values:
                    self.log(values, step)
                self.last_step = max(self.last_step, step)
        except Exception as e:
            self._fail(f"at step {info.get('step', '?')}", e)

    def close(self, record: dict | None) -> None:
        """Log the record's final figures and config, and end the tracker run (``record`` None or
        failed, or this tracker failed mid-run: ended as failed, no figures)."""
        ok = record is not None and record.get("status") == "ok" and not self.failed
        final = final_scalars(record) if ok else {}
        params = config_params(record["config"]) if ok and record.get("config") else {}
        try:
            self.finish(record if ok else None, final, params)
        except Exception as e:
            if not self.failed:
                self._fail("at the end of the run", e)

    def _fail(self, where: str, e: Exception) -> None:
        self.failed = _first_line(e)
        warnings.warn(f"--log {self.name} failed {where} of run {self.run_name} ({self.failed}); it logs nothing "
                      f"more, and the run and its record go on without it", TrackerWarning, stacklevel=3)


TRACKERS: Registry[type[Tracker]] = Registry("tracker")


@TRACKERS.register("tensorboard")
class TensorBoard(Tracker):
    """TensorBoard event files (torch.utils.tensorboard), LOG_DIR/tensorboard/<run id>/; the config as
    hparams with the test metrics (extra [tensorboard])."""

    name, module, extra = "tensorboard", "tensorboard", "tensorboard"

    def start(self, run_name, cfg, log_dir):
        from torch.utils.tensorboard import SummaryWriter

        root = log_dir / "tensorboard"
        path, n = root / run_name, 1
        while path.exists() and any(path.iterdir()):   # the same run again (same run id): a run of its own
            n += 1
            path = root / f"{run_name}-{n}"
        self.path = path
        self.writer = SummaryWriter(log_dir=str(path))

    def log(self, values, step):
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def finish(self, record, final, params):
        try:
            step = int(final.get("cost/steps", self.last_step))
            test = {k: v for k, v in final.items() if k.startswith("test/")} if params else {}
            for k, v in final.items():
                if k not in test:
                    self.writer.add_scalar(k, v, step)
            if params:   # the hparams view: the config beside the test metrics (add_hparams writes them as scalars)
                self.writer.add_hparams(params, test, run_name=".", global_step=step)
        finally:
            self.writer.close()


@TRACKERS.register("wandb")
class WandB(Tracker):
    """Weights & Biases, offline unless WANDB_MODE is set (LOG_DIR/wandb/offline-run-*/; `wandb sync`
    uploads it); project $WANDB_PROJECT or lepton_bench (extra [wandb])."""

    name, module, extra = "wandb", "wandb", "wandb"

    def start(self, run_name, cfg, log_dir):
        import wandb

        log_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=None if os.environ.get("WANDB_PROJECT") else "lepton_bench", name=run_name,
            dir=str(log_dir), mode=None if os.environ.get("WANDB_MODE") else "offline",
            config=cfg.to_dict(), tags=[cfg.variant],
            # no console capture (the progress bar), no system-metrics sampler taking CPU from timed steps
            settings=wandb.Settings(console="off", quiet=True, x_disable_stats=True))

    def log(self, values, step):
        self.run.log(values, step=step)

    def finish(self, record, final, params):
        try:
            if final:
                self.run.summary.update(final)
        finally:
            self.run.finish(exit_code=0 if record is not None else 1)


@TRACKERS.register("mlflow")
class MLflow(Tracker):
    """MLflow, a local file store LOG_DIR/mlruns unless MLFLOW_TRACKING_URI is set; experiment
    $MLFLOW_EXPERIMENT_NAME or lepton_bench; the config as params (extra [mlflow]: mlflow-skinny)."""

    name, module, extra = "mlflow", "mlflow", "mlflow"

    def start(self, run_name, cfg, log_dir):
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        from ..results import run_id

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = (log_dir / "mlruns").resolve().as_uri()
            # MLflow 3 keeps its file store in maintenance mode behind this switch; the store here is ours
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "lepton_bench"
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                experiment = client.create_experiment(name)
            except MlflowException:   # another run of the grid created it first
                experiment = client.get_experiment_by_name(name).experiment_id
        else:
            experiment = exp.experiment_id
        self.run_id = client.create_run(experiment, run_name=run_name, tags={
            "lepton_bench.run_id": run_id(cfg), "lepton_bench.variant": cfg.variant,
            "lepton_bench.seed": str(cfg.seed), "lepton_bench.config_hash": cfg.config_hash()}).info.run_id
        client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in config_params(cfg.to_dict()).items()])

    def _metrics(self, values, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(k, v, now, step) for k, v in values.items()]

    def log(self, values, step):
        self.client.log_batch(self.run_id, metrics=self._metrics(values, step))

    def finish(self, record, final, params):
        try:
            if final:   # params were logged at the start (MLflow's params are written once)
                self.client.log_batch(self.run_id, metrics=self._metrics(final, int(final.get("cost/steps",
                                                                                             self.last_step))))
        finally:
            self.client.set_terminated(self.run_id, "FINISHED" if record is not None else "FAILED")


# ---------------------------------------------------------------- a run's trackers

def check(names: Iterable[str]) -> list[type[Tracker]]:
    """The tracker classes of ``names`` (once each, in order): an unknown name gets close matches, a
    missing package one line naming the extra that installs it. Call it before training."""
    classes = [TRACKERS.get(n) for n in dict.fromkeys(names)]
    for cls in classes:
        cls.check()
    return classes


def open_trackers(cfg: RunConfig, run_name: str | None = None) -> list[Tracker]:
    """A tracker run for each of ``cfg.log``, named ``run_name`` (default: the run id), logging under
    ``cfg.log_dir``. If one cannot start, those started are ended (as failed) and the error raised."""
    from ..results import run_id

    classes = check(cfg.log)
    name = run_name or run_id(cfg)
    opened: list[Tracker] = []
    try:
        for cls in classes:
            opened.append(cls().open(name, cfg, cfg.log_dir or DEFAULT_LOG_DIR))
    except BaseException:
        close_trackers(opened, None)
        raise
    return opened


def fan_out(progress: Progress | None, trackers: Sequence[Tracker]) -> Progress | None:
    """One ``Progress`` that calls ``progress`` (the progress bar; may be None) and then every tracker."""
    if not trackers:
        return progress

    def say(event: str, info: dict) -> None:
        if progress is not None:
            progress(event, info)
        for t in trackers:
            t(event, info)

    return say


def close_trackers(trackers: Sequence[Tracker], record: dict | None) -> None:
    """End every tracker run with the run's record (None: the run failed before it had one)."""
    for t in trackers:
        t.close(record)
