"""The commands: run (one variant), list, prepare, cache, report, and the grid worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import LeptonError
from .common import _check_data_dir, _overrides, _runtime
from .parser import _registries


def _one_line(text: str, width: int = 100) -> str:
    """A description cut to one table line, at a word boundary."""
    return text if len(text) <= width else text[: text.rfind(" ", 0, width - 1)] + " …"


def cmd_list(args) -> int:
    from tabulate import tabulate

    reg = _registries()[args.kind]
    rows = [(name, _one_line(reg.help(name))) for name in reg.list(args.pattern)]
    if not rows:
        print(f"no {args.kind} match {args.pattern!r}", file=sys.stderr)
        return 1
    print(tabulate(rows, headers=[args.kind[:-1], "description"], tablefmt="github"))
    return 0


class _Bar:
    """tqdm over optimizer steps, with the latest losses and validation score."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True,
                        file=sys.stderr)
        self.done = 0
        self.log = not enabled   # no bar (a log file, CI): one plain line per validation instead
        self.post: dict[str, str] = {}

    def __call__(self, event: str, info: dict) -> None:
        if event == "start":
            self.bar.total = info["steps"]
            self.bar.refresh()
        elif event == "data":
            self.bar.set_description(f"data {info['task']}")
        elif event == "step":
            self.bar.set_description("train")
            self.bar.update(info["step"] - self.done)
            self.done = info["step"]
            self.post.update({f"loss.{k}": f"{v:.3f}" for k, v in info["losses"].items()})
            self.bar.set_postfix(self.post, refresh=False)
        elif event == "eval":
            self.post["val"] = f"{info['score']:.4f}"
            self.bar.set_postfix(self.post)
            if self.log:
                print(f"step {info['step']}/{self.bar.total} val {info['score']:.4f} "
                      + " ".join(f"{k}={v}" for k, v in self.post.items() if k != "val"),
                      file=sys.stderr, flush=True)
        elif event == "test":
            self.bar.set_description(f"test {info['task']}")

    def close(self) -> None:
        self.bar.close()


def cmd_run(args) -> int:
    from tabulate import tabulate

    from ..cache import cache_cap

    cache_cap()   # a bad LEPTON_BENCH_CACHE_MAX_GB fails now, not in every run
    for flag, value in (("--limit-train", args.limit_train), ("--limit-eval", args.limit_eval),
                        ("--steps", args.steps), ("--seeds", args.seeds)):
        if value is not None and value < 1:
            raise LeptonError(f"{flag} must be at least 1, got {value}")
    if args.grid:
        from .grid import cmd_grid

        return cmd_grid(args)
    grid_only = {"--seeds": args.seeds is not None, "--variants": args.variants is not None,
                 "--sweep": bool(args.sweep),
                 "--workers": args.workers != 1, "--retry-failed": args.retry_failed, "--dry-run": args.dry_run,
                 "--executor": args.executor != "local", "--executor-config": args.executor_config is not None,
                 **{f"--{k.replace('_', '-')}": getattr(args, k) is not None
                    for k in ("partition", "time_min", "cpus_per_run", "gpus_per_run", "mem_gb", "cluster",
                              "ray_address", "runs_per_device")}}
    given = [flag for flag, on in grid_only.items() if on]
    if given:
        raise LeptonError(f"{', '.join(given)}: grid option{'s' if len(given) > 1 else ''}; use with --grid")

    from ..outputs import check_writable
    from ..results import append_record
    from ..run.train import run
    from ..variants import make_config

    overrides = _overrides(args)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    out_dir = Path(args.out or "results/adhoc")
    check_writable(out_dir)   # before the run, not after it: its record must have somewhere to go
    cfg = make_config(args.variant, args.tasks, seed=args.seed or 0, overrides=overrides,
                      limit_train=args.limit_train, limit_eval=args.limit_eval,
                      **_runtime(args, out_dir / "trackers"))
    _check_data_dir(args.data_dir, cfg.tasks)
    from ..run.distributed import world_from_env
    from ..run.trackers import close_trackers, fan_out, open_trackers

    main_rank = world_from_env().main   # under torchrun only rank 0 reports, records and logs to trackers
    trackers = open_trackers(cfg) if main_rank else []
    bar = _Bar(cfg.train.steps, enabled=not args.no_progress and main_rank)
    try:
        record = run(cfg, fan_out(bar, trackers) if main_rank else None)
    except BaseException:
        close_trackers(trackers, None)   # ended as failed
        raise
    finally:
        bar.close()
    if record is None:
        return 0
    out = out_dir / "runs.jsonl"
    append_record(out, record)
    close_trackers(trackers, record)   # after the record is safe

    rows = []
    for task, m in record["metrics"].items():
        t = record["cost"]["tasks"][task]
        for i, (name, value) in enumerate(m["test"].items()):
            rows.append([task if i == 0 else "", name, f"{m['val'][name]:.4f}", f"{value:.4f}",
                         f"{t['samples_per_s']:.0f}" if i == 0 and t["samples_per_s"] else ""])
    print(tabulate(rows, headers=["task", "metric", "val (best)", "test", "train samples/s"],
                   tablefmt="github"))
    c = record["cost"]
    print(f"{record['run_id']}: train {c['train_seconds']:.0f}s, eval {c['eval_seconds']:.0f}s, "
          f"best step {record['selection']['best_step']}, peak RSS {c['memory']['peak_rss_mb']:.0f} MiB, "
          f"params {c['params']['total']:,}; record appended to {out}")
    return 0


def cmd_prepare(args) -> int:
    import time

    from tabulate import tabulate

    from ..data import cache_cap, cache_key, default_cache_dir, load_task
    from ..grid.plan import plan
    from ..run.train import task_reads
    from ..tasks import TASKS
    from ..variants import make_config

    if args.grid and args.tasks:
        raise LeptonError("give --grid or --tasks, not both")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise LeptonError(f"--data-dir {args.data_dir}: no such folder")
    if args.cache_dir:
        os.environ["LEPTON_BENCH_CACHE"] = str(Path(args.cache_dir).resolve())
    cap = cache_cap()
    if args.grid:
        configs = [r.config for r in plan(args.grid, overrides=args.overrides, data_dir=args.data_dir)]
    else:
        names = [TASKS.get(t).name for t in (args.tasks or TASKS.list())]   # unknown task: close matches
        configs = [make_config(f"stl-{t}", overrides=args.overrides, data_dir=args.data_dir) for t in names]
    rows, done = [], set()
    for cfg in configs:
        for name, task_cfg in cfg.tasks.items():
            spec = TASKS.get(name)
            reads = task_reads(cfg, spec)
            key = cache_key(spec, task_cfg, cfg.data_dir, cfg.holdout_seed, cfg.limit_train, cfg.limit_eval, **reads)
            if key in done:
                continue
            done.add(key)
            print(f"{name}: loading {args.data_dir or 'the Hub'} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            data = load_task(spec, task_cfg, cfg.data_dir, cfg.holdout_seed, cfg.limit_train, cfg.limit_eval,
                             **reads)
            sizes = data.sizes()
            rows.append([name, data.source, " / ".join(f"{sizes[k]:,}" for k in ("train", "validation", "test")),
                         data.vocab_size or "—", f"{time.perf_counter() - t0:.1f}", f"{name}-{key}.pt"])
    print(tabulate(rows, headers=["task", "source", "train / val / test", "vocab", "seconds", "cache file"],
                   tablefmt="github"))
    print(f"cached in {default_cache_dir()}; runs read it when LEPTON_BENCH_CACHE points there")
    evicted = [row[-1] for row in rows if not (default_cache_dir() / row[-1]).exists()]
    if evicted:   # the cap is below what this grid needs: its runs would rebuild (and evict) again and again
        from ..cache import CAP_ENV, human_size

        print(f"lepton-bench: warning: {len(evicted)} of the {len(rows)} files just prepared were evicted to keep "
              f"the cache under its cap ({CAP_ENV}: {human_size(cap)}); raise it, or set it to none",
              file=sys.stderr)
    return 0


def cmd_cache(args) -> int:
    """cache list / clear / dir: the tensor cache's files (lepton_bench/cache.py: no torch)."""
    import math
    import time
    from collections import Counter

    from ..cache import CAP_ENV, cache_cap, cache_files, clear, default_cache_dir, human_size

    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.cache_command == "dir":
        print(root)
        return 0
    if args.cache_command == "list":
        from tabulate import tabulate

        cap = cache_cap()
        files = cache_files(root)
        total = sum(f.size for f in files)
        if files:
            rows = [(f.path.name, f.task, human_size(f.size), time.strftime("%Y-%m-%d %H:%M", time.localtime(f.used)))
                    for f in files]
            print(tabulate(rows, headers=["file", "task", "size", "last used"], tablefmt="github",
                           colalign=("left", "left", "right", "left")))
        if cap is None:
            against = f"{human_size(total)}, no cap ({CAP_ENV})"
        else:
            against = f"{human_size(total)} of a {human_size(cap)} cap ({CAP_ENV})" + (
                "; over it: the next new file evicts from the top" if total > cap
                else "; least recently used first" if len(files) > 1 else "")
        print(f"{len(files)} file{'' if len(files) == 1 else 's'} in {root}: {against}")
        return 0
    # clear
    days = args.older_than
    if days is not None and not (math.isfinite(days) and days >= 0):
        raise LeptonError(f"--older-than must be a number of days, 0 or more, got {days:g}")
    tasks = None
    if args.tasks:
        from ..tasks import TASKS

        cached = {f.task for f in cache_files(root)}   # an unregistered task's files (a plugin gone) too
        tasks = [t if t in cached else TASKS.get(t).name for t in args.tasks]   # a typo: close matches
    gone = clear(root, tasks, days)
    left = cache_files(root)
    kept = f"; {len(left)} kept ({human_size(sum(f.size for f in left))})" if left else ""
    if not gone:
        print(f"nothing to clear in {root}: no cache file matches{kept}")
        return 0
    per_task = ", ".join(f"{task} {n}" for task, n in sorted(Counter(f.task for f in gone).items()))
    print(f"freed {human_size(sum(f.size for f in gone))}: {len(gone)} cache file{'' if len(gone) == 1 else 's'} "
          f"({per_task}) from {root}{kept}")
    return 0


def cmd_worker(args) -> int:
    from ..grid.runner import serve, worker

    if args.serve:
        return serve()
    if not (args.config and args.record):
        raise LeptonError("_worker needs CONFIG RECORD, or --serve")
    return worker(args.config, args.record)


def cmd_report(args) -> int:
    from ..report import write_report

    path = write_report(Path(args.results), Path(args.out) if args.out else None)
    print(f"report written to {path}")
    if args.csv:
        from ..results import load

        csv = path.parent / "runs.csv"
        load(args.results).to_csv(csv, index=False)
        print(f"table written to {csv}")
    return 0
