"""Command line: the only module that parses arguments or prints for people."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import LeptonError

KINDS = ("variants", "tasks", "architectures", "weightings", "samplers")


def _registries():
    from .models import ARCHITECTURES
    from .sampling import SAMPLERS
    from .tasks import TASKS
    from .variants import VARIANTS
    from .weighting import WEIGHTINGS

    return {"variants": VARIANTS, "tasks": TASKS, "architectures": ARCHITECTURES,
            "weightings": WEIGHTINGS, "samplers": SAMPLERS}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lepton-bench",
        description="Does one multi-task model beat one model per task? Train matched single-task "
                    "baselines and multi-task variants on CIFAR-10, IMDB and CoNLL-2003.")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first, to register its variants, weightings, ... (repeatable); "
                        "installed plugins (entry points 'lepton_bench.plugins') load by themselves")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train and evaluate one variant, append its record",
                       description="Train one variant on its tasks, validate every --eval-every "
                                   "steps, test the best validation checkpoint once, and append "
                                   "one JSON record to OUT/runs.jsonl.")
    r.add_argument("--variant", required=True, metavar="NAME",
                   help="registered variant, e.g. hard-ew or stl-cifar10 (see: list variants)")
    r.add_argument("--tasks", nargs="+", metavar="TASK",
                   help="train these tasks instead of the variant's own (cifar10 imdb conll2003)")
    r.add_argument("--seed", type=int, default=0, help="seeds model init, data order and augmentation "
                   "(default: 0)")
    r.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N "
                   "(default: auto)")
    r.add_argument("--data-dir", default=os.environ.get("LEPTON_BENCH_DATA"), metavar="DIR",
                   help="read DIR/<task>/ parquet folders (the Hub's layout) instead of the Hub; "
                        "default: $LEPTON_BENCH_DATA, else the Hub")
    r.add_argument("--steps", type=int, metavar="N", help="optimizer steps; every task gets one "
                   "batch per step (default: 2000)")
    r.add_argument("--limit-train", type=int, metavar="N", help="use a seeded subset of N train "
                   "examples per task (smoke runs)")
    r.add_argument("--limit-eval", type=int, metavar="N", help="use a seeded subset of N validation "
                   "and N test examples per task")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 --set "
                        "tasks.imdb.max_len=128 --set model.depth=4 (repeatable)")
    r.add_argument("--out", default="results/adhoc", metavar="DIR",
                   help="append the record to DIR/runs.jsonl (default: results/adhoc)")
    r.add_argument("--no-progress", action="store_true",
                   help="no progress bar; log one line per validation instead")

    ls = sub.add_parser("list", help="list registered variants, tasks, architectures, ...",
                        description="List what is registered, with a one-line description each.")
    ls.add_argument("kind", nargs="?", default="variants", choices=KINDS,
                    help="what to list (default: variants)")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'stl-*'")
    return p


def cmd_list(args) -> int:
    from tabulate import tabulate

    reg = _registries()[args.kind]
    rows = [(name, reg.help(name)) for name in reg.list(args.pattern)]
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

    from .results import append_record
    from .train import run
    from .variants import make_config

    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    for flag, value in (("--limit-train", args.limit_train), ("--limit-eval", args.limit_eval),
                        ("--steps", args.steps)):
        if value is not None and value < 1:
            raise LeptonError(f"{flag} must be at least 1, got {value}")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise LeptonError(f"--data-dir {args.data_dir}: no such folder")
    cfg = make_config(args.variant, args.tasks, seed=args.seed, overrides=overrides,
                      device=args.device, data_dir=args.data_dir,
                      limit_train=args.limit_train, limit_eval=args.limit_eval)
    bar = _Bar(cfg.train.steps, enabled=not args.no_progress)
    try:
        record = run(cfg, bar)
    finally:
        bar.close()
    out = Path(args.out) / "runs.jsonl"
    append_record(out, record)

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .plugins import load_plugins

        load_plugins(args.plugin)
        return {"run": cmd_run, "list": cmd_list}[args.command](args)
    except LeptonError as e:
        print(f"lepton-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lepton-bench: interrupted; nothing was recorded for the unfinished run", file=sys.stderr)
        return 130
