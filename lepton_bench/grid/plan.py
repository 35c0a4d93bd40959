"""A grid's plan: every run of a preset (variants x sweep points x seeds, the static front, the conditions),
its run id and config, the budget-saving protocol's runs after tuning, and the records taken over from
the grids it borrows from."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..config import RUNTIME_FIELDS, RunConfig
from ..errors import ConfigError
from ..results import read_record_files, read_records, record_path, run_id, runs_path, write_json_atomic
from ..variants import VARIANTS, make_config
from .presets import GRIDS, Grid
from .selection import choose, point_of, point_scores


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
