"""``run --grid``: plan a grid, refuse what it would ignore, run it on an executor, print the plan."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path

from ..errors import LeptonError
from .common import _check_data_dir, _overrides, _runtime


def _executor_options(args):
    """Executor options: the --executor-config file, then the flags given."""
    from dataclasses import fields

    from ..grid.executors import EXECUTORS, ExecutorOptions

    engine = EXECUTORS.get(args.executor)   # an unknown name fails here, with close matches
    known = {f.name for f in fields(ExecutorOptions)} - {"plugins", "workers"}
    opts: dict = {}
    if args.executor_config:
        try:
            opts = json.loads(Path(args.executor_config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LeptonError(f"--executor-config {args.executor_config}: {e}") from None
        if not isinstance(opts, dict) or set(opts) - known:
            bad = sorted(set(opts) - known) if isinstance(opts, dict) else ["not a JSON object"]
            raise LeptonError(f"--executor-config {args.executor_config}: unknown keys {', '.join(bad)}; "
                              f"known: {', '.join(sorted(known))}")
    flags = {"partition": args.partition, "time_min": args.time_min, "cpus_per_run": args.cpus_per_run,
             "gpus_per_run": args.gpus_per_run, "mem_gb": args.mem_gb, "cluster": args.cluster,
             "address": args.ray_address, "runs_per_device": args.runs_per_device,
             "process_per_run": args.process_per_run or None}
    opts.update({k: v for k, v in flags.items() if v is not None})
    options = ExecutorOptions(workers=args.workers, plugins=tuple(args.plugin), **opts)
    engine.check_options(options)
    if options.runs_per_device > 1 and args.device.startswith("cuda:"):
        raise LeptonError(f"--device {args.device} with --runs-per-device: a packed run sees one GPU, its slot's; "
                          "use --device auto or cuda")
    return options


def cmd_grid(args) -> int:
    from ..grid.plan import plan
    from ..outputs import GridLock, check_writable
    from ..results import adopt, read_record_files

    if args.workers < 1:
        raise LeptonError(f"--workers must be at least 1, got {args.workers}")
    options = _executor_options(args)   # bad options fail before anything is planned or written
    # what a grid would silently ignore is an error instead
    for flag, value, instead in (("--tasks", args.tasks, "each variant trains its own tasks; narrow the grid "
                                                          "with --variants"),
                                 ("--seed", args.seed, "a grid runs seeds 0..N-1: use --seeds N")):
        if value is not None:
            raise LeptonError(f"{flag} is a single-run option ({instead})")
    overrides = _overrides(args) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    results_dir = Path(args.out or "results") / args.grid
    runtime = _runtime(args, results_dir / "trackers")   # --log: each run one tracker run, named by its run id

    def planned():
        return plan(args.grid, seeds=args.seeds, variants=args.variants, overrides=overrides, sweep=args.sweep,
                    limit_train=args.limit_train, limit_eval=args.limit_eval, results_dir=results_dir,
                    **runtime)

    runs = planned()
    _check_data_dir(args.data_dir, [t for r in runs for t in r.config.tasks])
    check_writable(results_dir)   # before any run: a read-only or unwritable --out is one line, exit 2
    if args.dry_run:
        _take_over(args.grid, runs, results_dir, planned)
        adopt(results_dir)
        return _print_plan(planned(), read_record_files(results_dir), results_dir, args.retry_failed)
    lock = GridLock(results_dir)   # one grid per folder: a second start says who holds it (or --wait)
    lock.acquire(wait=args.wait, say=lambda msg: print(f"lepton-bench: {msg}", file=sys.stderr, flush=True))
    try:
        return _run_locked(args, runs, results_dir, planned, options)
    finally:
        lock.release()


def _take_over(grid: str, runs, results_dir: Path, planned):
    """The identical runs of the grids this one borrows from, taken over (planned again as tunings finish)."""
    from ..grid.plan import borrow
    from ..grid.presets import GRIDS

    lenders = GRIDS.get(grid).borrows
    while lenders and borrow(runs, results_dir, lenders):   # identical runs another grid has: taken, not trained;
        runs = planned()                                    # a tuning finished so: plan its later seeds, again
    return runs


def _run_locked(args, runs, results_dir: Path, planned, options) -> int:
    """The grid's runs, with its folder locked: taken over where another grid has them, run, resumed as the
    tuning finishes; SIGTERM or SIGINT stops it cleanly (see ``_stopping``)."""
    from tqdm import tqdm

    from ..grid.executors import Stop
    from ..grid.runner import run_grid

    runs = _take_over(args.grid, runs, results_dir, planned)
    bar = tqdm(total=len(runs), unit="run", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)

    def progress(event, info):
        if event == "plan":
            bar.update(info["skipped"])
            bar.set_postfix(skipped=info["skipped"])
        elif event == "run":
            rec = info["record"]
            bar.update(1)
            bar.set_postfix(finished=info["finished"], failed=info["failed"], remaining=info["remaining"])
            if rec["status"] == "interrupted":
                bar.write(f"interrupted: {rec['run_id']} (runs again on resume)", file=sys.stderr)
            elif rec["status"] != "ok":
                bar.write(f"failed: {rec['run_id']}: {rec.get('error')}", file=sys.stderr)
            elif args.no_progress:
                c = rec["cost"]
                print(f"done: {rec['run_id']} (train {c['train_seconds']:.0f}s + eval {c['eval_seconds']:.0f}s)",
                      file=sys.stderr, flush=True)

    stop = Stop()
    try:
        with _stopping(stop):
            s = run_grid(runs, results_dir, retry_failed=args.retry_failed, progress=progress,
                         executor=args.executor, options=options, stop=stop)
            while any(r.pending for r in runs) and not stop.is_set():   # budget-saving protocol: the tuning
                pending = sum(r.pending for r in runs)                  # runs are in, plan the rest
                runs = planned()
                if sum(r.pending for r in runs) == pending:   # no variant's tuning finished (all its points failed)
                    break
                more = run_grid(runs, results_dir, retry_failed=args.retry_failed, progress=progress,
                                executor=args.executor, options=options, stop=stop)
                s.finished, s.failed = s.finished + more.finished, s.failed + more.failed
                s.interrupted, s.left = s.interrupted + more.interrupted, more.left
    finally:
        bar.close()
    if stop.is_set():
        left = s.left + sum(r.pending for r in runs)
        print(f"grid {args.grid}: {stop.why}: {s.finished} finished, {s.failed} failed, {s.interrupted} "
              f"interrupted, {left} left; run the same command to resume", file=sys.stderr)
        return 128 + stop.signum if stop.signum else 1
    print(f"grid {args.grid}: {s.planned} runs planned, {s.skipped} already recorded, {s.finished} finished, "
          f"{s.failed} failed; records in {s.results}")
    print(f"report: python -m lepton_bench report {results_dir}")
    return 0 if s.failed == 0 else 1


@contextlib.contextmanager
def _stopping(stop):
    """SIGTERM and SIGINT stop the grid cleanly: ``stop`` is set (the executor ends its runs in flight, each
    recorded interrupted, and starts no other); a second signal stops it at once (KeyboardInterrupt)."""
    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.signum = signum
        stop.request(f"stopped by {signal.Signals(signum).name}")

    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def _print_plan(runs, done, results_dir, retry_failed) -> int:
    from collections import Counter

    from tabulate import tabulate

    rows, todo = [], 0
    secs = {}
    for rec in done.values():   # seconds per variant seen so far, for an estimate
        if rec["status"] == "ok":
            secs.setdefault(rec["variant"], []).append(rec["cost"]["train_seconds"] + rec["cost"]["eval_seconds"])
    estimate = 0.0
    for r in runs:
        rec = done.get(r.run_id)
        state = ("done" if rec["status"] == "ok" else "failed" if rec["status"] != "interrupted" else "to run"
                 ) if rec else "to run"
        if state == "to run" or (state == "failed" and retry_failed):
            todo += 1
            if r.config.variant in secs:
                estimate += sum(secs[r.config.variant]) / len(secs[r.config.variant])
        if r.pending:
            state = "after tuning"
        point = ", ".join(f"{k}={v}" for k, v in r.point) or ("chosen on validation" if r.pending else "—")
        variant = f"{r.config.variant} ({r.member})" if r.member else r.config.variant
        rows.append([r.run_id, variant, point, r.config.seed, r.config.train.steps, state])
    print(tabulate(rows, headers=["run", "variant", "sweep point", "seed", "steps", "state"], tablefmt="github"))
    budgets: dict[tuple, set] = {}   # (axes, points) -> variants: a grid's extra axes give some variants more
    for r in runs:
        if r.config.sweep and not r.pending:
            budgets.setdefault((tuple(r.config.sweep["axes"]), r.config.variant, r.member), set()).add(r.point)
    by_budget = Counter((axes, len(points)) for (axes, *_), points in budgets.items())
    if by_budget:
        seeds = len({r.config.seed for r in runs})
        tune = next(r.config.sweep.get("tune_seeds") for r in runs if r.config.sweep)
        print("\nprotocol: " + " and ".join(f"{n} variant{'s' * (n > 1)} × {k} sweep points ({', '.join(axes)})"
                                            for (axes, k), n in by_budget.most_common()) + " × "
              + (f"{tune} tuning seeds, then {seeds - tune} more seed{'s' * (seeds - tune > 1)} at each variant's "
                 f"point chosen on validation (budget-saving)" if tune else f"{seeds} seeds, every point")
              + "; the report selects each variant's point on validation only")
    counts = Counter(row[-1] for row in rows)
    print(f"\n{len(runs)} runs into {results_dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + (f"; about {estimate / 60:.0f} min for the runs whose variant has finished before" if estimate else ""))
    return 0
