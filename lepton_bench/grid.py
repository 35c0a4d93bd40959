"""Grids: named presets of variants x seeds x budget, run as one fault-isolated, resumable job.

Every run is a child process (clean peak-memory figures; a crash stays contained) that writes
its record to ``results/<grid>/records/<run_id>.json`` atomically (temp file + rename). The
records folder is the truth: ``runs.jsonl`` is rebuilt from it (again temp + rename) after each
run, so a grid killed at any moment, even with SIGKILL, resumes with every run recorded once.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from .config import RUNTIME_FIELDS, RunConfig, from_dict
from .errors import ConfigError
from .executors import EXECUTORS, ExecutorOptions, Job, Stop
from .registry import Registry
from .results import (
    adopt,
    failed_record,
    merge,
    now_iso,
    read_record_files,
    read_records,
    record_path,
    run_id,
    runs_path,
    write_json_atomic,
)
from .selection import choose, point_of, point_scores
from .tasks import default_tasks
from .variants import VARIANTS, make_config


@dataclass(frozen=True)
class Grid:
    """A preset: variants × sweep points × seeds. ``sweep`` maps dotted config keys to the values
    every variant, STL included, is tried at (the product of the axes; the fair-comparison protocol:
    the same tuning budget for all). ``extra_sweep`` maps a variant pattern to further axes for the
    matching variants only: a larger budget for them (e.g. regularisation for the EW baseline and STL,
    as Kurin et al. 2022 tune them), which the report states. ``tune_seeds`` k: the budget-saving
    protocol — every point on seeds 0..k-1, then the remaining seeds at each variant's point chosen on
    validation only. ``static_front`` n: every static variant of the grid that declares no weights runs
    at each interior point of the simplex lattice of its tasks' weights at density n (each point its own
    configuration, tuned on the same axes): the static-weight front (Xin et al. 2022). ``conditions`` maps
    dotted keys to the values of a factor the study varies, not tunes (a task's label budget, say): each
    value is a setting of its own, every variant tuned in it apart; a ``tasks.<task>.*`` key applies to the
    variants that train that task, and the others run once. ``borrows`` names grids whose records this one
    takes over where a planned run has the same run id (the same config: the same run), instead of
    training it again."""

    name: str
    variants: tuple[str, ...]                 # fnmatch patterns over the variant registry
    seeds: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)   # dotted config keys, every run
    limit_train: int | None = None
    limit_eval: int | None = None
    help: str = ""
    sweep: dict[str, tuple] = field(default_factory=dict)     # dotted key -> values (search axes)
    tune_seeds: int | None = None
    extra_sweep: dict[str, dict[str, tuple]] = field(default_factory=dict)   # variant pattern -> more axes
    static_front: int = 0   # density of the static-weight simplex (0: none); see simplex_weights
    conditions: dict[str, tuple] = field(default_factory=dict)   # dotted key -> the settings studied
    borrows: tuple[str, ...] = ()   # grids whose records of identical runs this one takes over

    def __post_init__(self):
        for key, values in [*self.sweep.items(), *(kv for ax in self.extra_sweep.values() for kv in ax.items()),
                            *self.conditions.items()]:
            if not isinstance(values, (tuple, list)) or len(values) < 1:
                raise ConfigError(f"grid {self.name}: sweep axis or condition {key} needs a tuple of values, "
                                  f"not {values!r}")
        both = sorted({k for ax in self.extra_sweep.values() for k in ax} & set(self.sweep))
        if both:
            raise ConfigError(f"grid {self.name}: {', '.join(both)} is an axis of every variant and of some: "
                              "declare it once")
        both = sorted(set(self.conditions) & ({k for ax in self.extra_sweep.values() for k in ax} | set(self.sweep)))
        if both:
            raise ConfigError(f"grid {self.name}: {', '.join(both)} is both a condition (studied) and a sweep "
                              "axis (tuned): give it one role")
        if self.tune_seeds is not None and not 0 < self.tune_seeds <= self.seeds:
            raise ConfigError(f"grid {self.name}: tune_seeds must be in 1..seeds ({self.seeds}), "
                              f"not {self.tune_seeds}")


GRIDS: Registry[Grid] = Registry("grid")


def register_grid(g: Grid) -> Grid:
    return GRIDS.register(g.name, g, help=g.help)


register_grid(Grid(
    "smoke", ("*",), seeds=1, limit_train=256, limit_eval=128,
    overrides={"train.steps": 6, "train.eval_every": 3, "train.log_every": 3, "train.timing_warmup": 1},
    help="every variant, 6 steps on 256 real examples per task: seconds a run"))
register_grid(Grid(
    "quick", (*(f"stl-{t}" for t in default_tasks()), "hard-ew", "hard-uw", "hard-pcgrad", "hard-static-*",
              "adapters-ew", "lepton-*"), seeds=3,
    overrides={"train.steps": 200, "train.eval_every": 100}, limit_train=None, limit_eval=2000,
    help="STL baselines + representative MTL variants + the articles' design (lepton-*), 3 seeds, real data, "
         "200 steps: about two hours on 2 CPU cores"))
register_grid(Grid(
    # the variants of its committed runs; the architecture variants tagging-cross_stitch-ew and tagging-mtan-ew
    # (added later) are not in it, so its plan and committed runs stay as they are
    "tagging", ("tagging-stl-*", "tagging-hard-*", "tagging-ner-aux-*"), seeds=5,
    # 8e-3 added after the first sweep chose 4e-3, its end, for 24 of 29 configurations (their validation
    # curves still rising there): the range now holds the optimum or shows where the next value stops helping
    sweep={"train.lr": (1e-3, 2e-3, 4e-3, 8e-3)}, tune_seeds=2, borrows=("scarcity",),
    # dropout too for the EW baseline and STL (Kurin et al. 2022: regularised unitary scalarisation); STL's
    # larger budget can only shrink the gains MTL shows over it
    extra_sweep={"tagging-hard-ew": {"model.dropout": (0.1, 0.3)}, "tagging-stl-*": {"model.dropout": (0.1, 0.3)}},
    static_front=5,   # 6 interior points: one task at 3x the others' weight, or one at half
    help="CoNLL-2003 NER + POS + chunking through one BiLSTM encoder: STL, hard sharing with 7 weightings, the "
         "static front (simplex, density 5), NER with auxiliary tasks; lr (and dropout for EW and STL) tuned on 2 "
         "seeds, then 5 seeds at the chosen point, full data, 2,000 steps (CPU, background)"))
SCARCITY_FRACTIONS = (0.02, 0.1, 1.0)   # NER's label budgets; 5% and 25% are next (adding one runs only its runs)
register_grid(Grid(
    # NER (the main task) on a share of its labels, POS and chunking on all of theirs: where auxiliary tasks
    # are expected to pay (Caruana 1997; Bingel & Sogaard 2017). One auxiliary weight per family and three
    # budgets fit about 4 hours of this 2-core CPU; at 100% the runs are the tagging grid's own (the same
    # configs: taken over, and the tagging grid takes over the ones made here). The lr axis is the tagging
    # grid's widened one: scarce labels want a lower rate (5%, seed 0: 2e-3 > 4e-3 > 8e-3), full data a higher
    "scarcity", ("tagging-stl-conll2003", "tagging-stl-conll2003_pos", "tagging-stl-conll2003_chunk",
                 "tagging-ner-aux-pos-w0.5", "tagging-ner-aux-both-w0.5", "tagging-hard-ew", "tagging-hard-uw"),
    seeds=5, sweep={"train.lr": (1e-3, 2e-3, 4e-3, 8e-3)}, tune_seeds=2,
    conditions={"tasks.conll2003.train_fraction": SCARCITY_FRACTIONS}, borrows=("tagging",),
    help="CoNLL-2003 NER on 2%, 10% and 100% of its training labels, POS and chunking on all: STL NER, NER with "
         "POS and with POS + chunking as auxiliary tasks (w 0.5), three-task hard EW and UW; lr tuned on 2 seeds "
         "at every budget, then 5 seeds at the chosen point, 2,000 steps (CPU, background)"))
register_grid(Grid(
    "full", ("*",), seeds=3,
    help="every variant, 3 seeds, full data and the default 2000-step budget: meant for a GPU"))


@dataclass
class PlannedRun:
    run_id: str
    config: RunConfig
    point: tuple = ()        # its sweep point: ((key, value), ...); () without search axes
    pending: bool = False    # budget-saving protocol: waits for its variant's tuning runs (run_id unknown yet)
    member: str = ""         # a point of the static front: its weights, ``w=a/b/c`` in task order


def parse_sweep(text: str) -> tuple[str, tuple[str, ...]]:
    """``train.lr=1e-3,2e-3`` -> ("train.lr", ("1e-3", "2e-3")): a search axis from the command line
    (values as ``--set`` takes them; a JSON list value is one value: ``key=[1,2],[3,4]`` is not split
    inside brackets)."""
    if "=" not in text:
        raise ConfigError(f"bad --sweep {text!r}: expected KEY=V1,V2,..., e.g. train.lr=1e-3,2e-3,4e-3")
    key, raw = (x.strip() for x in text.split("=", 1))
    values, depth, cur = [], 0, ""
    for ch in raw:
        depth += ch in "[{" and 1 or ch in "]}" and -1 or 0
        if ch == "," and depth == 0:
            values.append(cur.strip())
            cur = ""
        else:
            cur += ch
    values.append(cur.strip())
    if not key or any(v == "" for v in values):
        raise ConfigError(f"bad --sweep {text!r}: a key and at least one non-empty value, e.g. train.lr=1e-3,2e-3")
    return key, tuple(values)


def _points(axes: dict[str, tuple]) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the axes' values, the first axis slowest."""
    out: list[tuple] = [()]
    for key, values in axes.items():
        out = [(*p, (key, v)) for p in out for v in values]
    return out


def plan(grid: str, *, seeds: int | None = None, variants: str | None = None,
         overrides: Sequence[str] = (), limit_train: int | None = None, limit_eval: int | None = None,
         sweep: Sequence[str] = (), results_dir: Path | None = None, **runtime: Any) -> list[PlannedRun]:
    """The runs of a grid: its variants (optionally narrowed by a pattern) × sweep points × seeds.
    ``limit_*`` replace the grid's own limits when given; ``sweep`` (``KEY=V1,V2`` strings) adds search
    axes or replaces the grid's axis of the same key.

    Under the budget-saving protocol (``Grid.tune_seeds``) seeds from k on run at each variant's point
    chosen on validation from the records in ``results_dir``; until every tuning run of a variant has a
    record, its later seeds are ``pending`` (planned again once the tuning runs are in).

    ``runtime`` sets the RunConfig fields that change how, not what, is trained (device, data_dir,
    precision, compile)."""
    unknown = set(runtime) - set(RUNTIME_FIELDS) | ({"sweep"} & set(runtime))
    if unknown:
        raise TypeError(f"plan() takes runtime fields only, not {', '.join(sorted(unknown))}")
    g = GRIDS.get(grid)
    names = list(dict.fromkeys(n for pattern in g.variants for n in VARIANTS.list(pattern)))
    if variants:   # comma-separated fnmatch patterns
        wanted = {n for pattern in variants.split(",") for n in VARIANTS.list(pattern.strip())}
        names = [n for n in names if n in wanted]
        if not names:
            raise ConfigError(f"no variant of grid {grid} matches {variants!r}")
    axes = {k: tuple(json.dumps(v) for v in vs) for k, vs in g.sweep.items()}   # as --set strings
    axes.update(dict(parse_sweep(t) for t in sweep))
    axes_of = {name: {**axes, **{k: tuple(json.dumps(v) for v in vs) for pattern, extra in g.extra_sweep.items()
                                 if fnmatch(name, pattern) for k, vs in extra.items() if k not in axes}}
               for name in names}
    swept = {k for a in axes_of.values() for k in a}
    both = sorted(swept & {o.split("=", 1)[0].strip() for o in overrides})
    if both:
        raise ConfigError(f"{', '.join(both)} is both set (--set) and swept (--sweep): give it one way")
    n_seeds = seeds if seeds is not None else g.seeds
    tune = g.tune_seeds if swept and g.tune_seeds is not None and g.tune_seeds < n_seeds else None
    base = [*(f"{k}={json.dumps(v)}" for k, v in g.overrides.items() if k not in swept), *overrides]

    def config(member: tuple[str, tuple[str, ...]], seed: int, point: tuple) -> RunConfig:
        name, fixed = member
        cfg = make_config(name, seed=seed, overrides=[*base, *fixed, *(f"{k}={v}" for k, v in point)],
                          limit_train=g.limit_train if limit_train is None else limit_train,
                          limit_eval=g.limit_eval if limit_eval is None else limit_eval, **runtime)
        cfg.sweep = {"axes": list(axes_of[name]), "tune_seeds": tune} if axes_of[name] else {}
        return cfg

    # a member: a variant, or one static-front point of it (its weights fixed, its own tuning), in each of the
    # grid's conditions that apply to it
    members = [(name, (*fixed, *cond)) for name in names for cond in _conditions(g, name, overrides)
               for fixed in _front_points(g, name, overrides)]
    points = {name: _points(axes_of[name]) for name in names}
    runs: list[PlannedRun] = []
    tuning_of: dict[tuple, list[PlannedRun]] = {m: [] for m in members}
    for seed in range(min(n_seeds, tune) if tune is not None else n_seeds):
        for m in members:
            for point in points[m[0]]:
                cfg = config(m, seed, point)
                runs.append(PlannedRun(run_id(cfg), cfg, _typed_point(cfg, axes_of[m[0]]), member=_label(cfg, m)))
                tuning_of[m].append(runs[-1])
    if tune is None:
        return runs
    done = _known_records(results_dir) if results_dir is not None else {}
    chosen: dict[tuple, tuple | None] = {}
    for m in members:   # each member's point, from its tuning runs' records (validation only)
        name, tuning = m[0], tuning_of[m]
        recs = [done.get(r.run_id) for r in tuning]
        best = choose(point_scores(recs, list(axes_of[name])), [r.point for r in tuning]) if all(recs) else None
        # the point as --set takes it, for the runs still to plan
        chosen[m] = next((p for p, r in zip(points[name] * tune, tuning, strict=True) if r.point == best), None)
    for seed in range(tune, n_seeds):
        for m in members:
            if chosen[m] is None:   # tuning not finished (or every point failed): not plannable yet
                cfg = config(m, seed, points[m[0]][0])
                label = _label(cfg, m)
                runs.append(PlannedRun(f"{m[0]}{' ' * bool(label)}{label}-s{seed}-(after tuning)", cfg, (),
                                       pending=True, member=label))
                continue
            cfg = config(m, seed, chosen[m])
            runs.append(PlannedRun(run_id(cfg), cfg, _typed_point(cfg, axes_of[m[0]]), member=_label(cfg, m)))
    return runs


def simplex_weights(tasks: Sequence[str], density: int) -> list[dict[str, float]]:
    """The interior points of the simplex lattice of ``len(tasks)`` task weights at ``density`` n: the
    weights T·k/n for every k with each k_i ≥ 1 and Σk = n — scaled so that equal weights are 1 each,
    as EW's are — without the equal point itself (EW's own variant). Rounded to 4 decimals."""
    t = len(tasks)
    if density < t:
        raise ConfigError(f"a static-front density of {density} has no interior point for {t} tasks: "
                          f"give at least {t}")
    out = []

    def fill(prefix: list[int], left: int) -> None:
        if len(prefix) == t - 1:
            if left >= 1:
                out.append([*prefix, left])
            return
        for k in range(1, left - (t - 1 - len(prefix)) + 1):
            fill([*prefix, k], left - k)

    fill([], density)
    return [{task: round(t * k / density, 4) for task, k in zip(tasks, ks, strict=True)}
            for ks in out if len(set(ks)) > 1]


def _front_points(g: Grid, name: str, overrides: Sequence[str]) -> list[tuple[str, ...]]:
    """The fixed overrides of a variant's members: one per point of the grid's static front
    (``Grid.static_front``) for a static variant that declares no weights of its own, else ``()``."""
    if not g.static_front or any(o.split("=", 1)[0].strip() == "weighting_args.static" for o in overrides):
        return [()]
    cfg = make_config(name)
    if cfg.weighting != "static" or cfg.weighting_args.get("static") or cfg.auxiliary:
        return [()]
    return [(f"weighting_args.static={json.dumps(w)}",) for w in simplex_weights(list(cfg.tasks), g.static_front)]


def _conditions(g: Grid, name: str, overrides: Sequence[str]) -> list[tuple[str, ...]]:
    """The condition overrides of a variant's members: one per combination of the grid's conditions that
    apply to it (a ``tasks.<task>.*`` key to the variants that train the task), else ``()``. A condition
    the command line sets (``--set``) is that one setting."""
    given = {o.split("=", 1)[0].strip() for o in overrides}
    tasks = make_config(name).tasks if g.conditions else {}
    axes = {k: tuple(json.dumps(v) for v in vs) for k, vs in g.conditions.items()
            if k not in given and (not k.startswith("tasks.") or k.split(".")[1] in tasks)}
    return [tuple(f"{k}={v}" for k, v in point) for point in _points(axes)]


def _label(cfg: RunConfig, member: tuple[str, tuple[str, ...]]) -> str:
    """What tells a member apart from its variant's others: ``w=1.8/0.6/0.6``, a static-front member's
    weights in task order (as the report labels it), and the conditions it runs in, ``key=value``."""
    static = any(o.startswith("weighting_args.static=") for o in member[1])
    weights = cfg.weighting_args.get("static", {})
    parts = ["w=" + "/".join(f"{weights.get(t, 1.0):g}" for t in cfg.tasks)] if static else []
    parts += [o for o in member[1] if not o.startswith("weighting_args.static=")]
    return ", ".join(parts)


def borrow(runs: Sequence[PlannedRun], results_dir: Path, grids: Sequence[str]) -> int:
    """Take over into ``results_dir`` the ok records of the grids ``grids`` (folders beside it) whose run id
    a planned run has and this grid lacks: the same run id is the same config, so the same run. Returns how
    many were taken."""
    have = read_record_files(results_dir)
    wanted = {r.run_id for r in runs if not r.pending} - set(have)
    taken = 0
    for other in grids:
        if not wanted:
            break
        for rid, rec in _known_records(Path(results_dir).parent / other).items():
            if rid in wanted and rec.get("status") == "ok":
                write_json_atomic(record_path(results_dir, rid), rec)
                wanted.discard(rid)
                taken += 1
    return taken


def _known_records(results_dir: Path) -> dict[str, dict]:
    """run_id -> record of a results folder: its record files, and the committed ``runs.jsonl`` of a
    fresh clone (which has no record files yet)."""
    recs = {r["run_id"]: r for r in read_records(runs_path(results_dir)) if r.get("run_id")}
    return {**recs, **read_record_files(results_dir)}


def _typed_point(cfg: RunConfig, axes: dict[str, tuple]) -> tuple:
    """The point of a config as records hold it (typed values at the axes' keys)."""
    return point_of(cfg.to_dict(), list(axes))


def worker(config_path: str, record_path: str) -> int:
    """Child process: train one config, write its record (ok or failed) atomically. With ``cfg.log`` the
    run is one tracker run of each tracker, named by its run id, ended after the record is written."""
    from .plugins import load_plugins
    from .trackers import close_trackers, fan_out, open_trackers
    from .train import run

    started = now_iso()
    cfg = from_dict(json.loads(Path(config_path).read_text()))
    plugins = env_plugins()
    trackers = []
    try:
        load_plugins(plugins)
        trackers = open_trackers(cfg)
        record = run(cfg, fan_out(None, trackers))
    except Exception as e:   # any failure of one run is recorded, never raised into the grid
        msg = str(e).splitlines()[0] if str(e) else ""
        record = failed_record(cfg, f"{type(e).__name__}: {msg}", started, traceback.format_exc())
    write_json_atomic(Path(record_path), record)
    close_trackers(trackers, record)
    return 0 if record["status"] == "ok" else 1


def serve() -> int:
    """A warm worker (``_worker --serve``): read jobs, one JSON line each (``{"config", "record"}``), from
    stdin; train each with ``worker`` and answer ``{"returncode"}`` on a line of its own, until stdin
    closes or a run fails (its process may be in a bad state: the executor starts a fresh one). Before
    each run the previous one's memory is released and the peak-RSS mark reset, so each record's peak is
    that of its own run over the process's resident base (imports, and what earlier runs' lazy imports
    added: about 1.0 GB here against 0.5-0.9 GB in a fresh process), which the record keeps beside it
    (``cost.memory.rss_at_start_mb``); ``env.worker.run`` says which of the worker's runs it was. Anything a
    run prints goes to stderr: stdout carries the answers only."""
    from .measure import release_memory, reset_peak_rss
    from .runenv import set_warm_run

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    runs = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        runs += 1
        release_memory()
        reset_peak_rss()
        set_warm_run({"run": runs})
        code = worker(job["config"], job["record"])
        set_warm_run(None)
        answers.write(json.dumps({"returncode": code}) + "\n")
        if code:
            break
    return 0


def env_plugins() -> list[str]:
    """Plugin modules the grid passes to its workers (the parent's --plugin flags)."""
    return [p for p in os.environ.get("LEPTON_BENCH_PLUGINS", "").split(",") if p]


# ---------------------------------------------------------------- the runner

@dataclass
class GridSummary:
    planned: int
    skipped: int
    finished: int = 0
    failed: int = 0
    interrupted: int = 0     # stopped with the grid (a signal): run again on resume
    left: int = 0            # not started when the grid stopped
    results: Path | None = None


def to_run(record: dict | None, retry_failed: bool) -> bool:
    """Whether a planned run is still to run: no record, an interrupted one, or (``retry_failed``) a failed one."""
    return record is None or record["status"] == "interrupted" or (retry_failed and record["status"] != "ok")


def run_grid(runs: list[PlannedRun], results_dir: Path, *, retry_failed: bool = False,
             progress: Callable[[str, dict], None] | None = None, executor: str = "local",
             options: ExecutorOptions | None = None, stop: Stop | None = None) -> GridSummary:
    """Run what is not yet recorded (interrupted runs again, and failed runs with ``retry_failed``) on
    ``executor``. Setting ``stop`` (a signal handler does) ends the runs in flight, recorded interrupted, and
    starts no other: the summary counts them and the runs left."""
    say = progress or (lambda event, info: None)
    options = options or ExecutorOptions()
    engine = EXECUTORS.get(executor)(options, results_dir)
    if stop is not None:
        engine.stop = stop
    adopt(results_dir)
    done = read_record_files(results_dir)
    todo = [r for r in runs if not r.pending and to_run(done.get(r.run_id), retry_failed)]
    summary = GridSummary(planned=len(runs), skipped=len(runs) - len(todo))
    results_dir.mkdir(parents=True, exist_ok=True)
    merge(results_dir)
    say("plan", {"todo": len(todo), "skipped": summary.skipped})
    summary.results = runs_path(results_dir)
    if not todo:
        return summary
    jobs_dir = results_dir / "jobs"
    jobs_dir.mkdir(exist_ok=True)
    started = now_iso()
    jobs = []
    for r in todo:
        cfg_path = jobs_dir / f"{r.run_id}.config.json"
        write_json_atomic(cfg_path, r.config.to_dict())
        jobs.append(Job(r.run_id, str(cfg_path), str(record_path(results_dir, r.run_id)), started))

    def finished(job: Job) -> None:
        rec = json.loads(Path(job.record_path).read_text())
        if rec["status"] == "ok":
            summary.finished += 1
        elif rec["status"] == "interrupted":
            summary.interrupted += 1
        else:
            summary.failed += 1
        Path(job.config_path).unlink(missing_ok=True)
        merge(results_dir)
        say("run", {"record": rec, "finished": summary.finished, "failed": summary.failed,
                    "remaining": len(todo) - summary.finished - summary.failed - summary.interrupted})

    engine.run(jobs, finished)
    summary.left = len(todo) - summary.finished - summary.failed - summary.interrupted
    return summary
