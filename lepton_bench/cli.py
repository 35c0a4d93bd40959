"""Command line: the only module that parses arguments or prints for people."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import LeptonError

KINDS = ("variants", "grids", "tasks", "metrics", "architectures", "stems", "trunks", "weightings", "samplers",
         "executors")


def _registries():
    from .executors import EXECUTORS
    from .grid import GRIDS
    from .models import ARCHITECTURES
    from .models.stems import STEMS
    from .models.trunk import TRUNKS
    from .sampling import SAMPLERS
    from .tasks import METRICS, TASKS
    from .variants import VARIANTS
    from .weighting import WEIGHTINGS

    return {"variants": VARIANTS, "grids": GRIDS, "tasks": TASKS, "metrics": METRICS, "architectures": ARCHITECTURES,
            "weightings": WEIGHTINGS, "samplers": SAMPLERS, "executors": EXECUTORS, "stems": STEMS,
            "trunks": TRUNKS}


def build_parser() -> argparse.ArgumentParser:
    """The parser; its help lists registered names, so load plugins first (``main`` does)."""
    from .grid import GRIDS
    from .tasks import TASKS

    p = argparse.ArgumentParser(
        prog="lepton-bench",
        description="Does one multi-task model beat one model per task? Train matched single-task "
                    "baselines and multi-task variants on CIFAR-10, IMDB and CoNLL-2003.")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first, to register its variants, weightings, ... (repeatable); "
                        "installed plugins (entry points 'lepton_bench.plugins') load by themselves")
    p.add_argument("--no-plugins", action="store_true",
                   help="skip the installed plugins (--plugin modules still load); the same as "
                        "LEPTON_BENCH_NO_PLUGINS=1, which the runs of a grid inherit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train one variant, or a whole grid of variants x seeds",
                       description="--variant: train one variant on its tasks, validate every "
                                   "train.eval_every steps, test the best validation checkpoint once, "
                                   "and append one JSON record to OUT/runs.jsonl. --grid: run every "
                                   "variant x seed of a preset, each in its own process, into "
                                   "OUT/<grid>/runs.jsonl; finished runs are skipped (resume).")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--variant", metavar="NAME",
                      help="registered variant, e.g. hard-ew or stl-cifar10 (see: list variants)")
    what.add_argument("--grid", metavar="NAME",
                      help=f"registered grid: {', '.join(GRIDS.list())} (see: list grids)")
    r.add_argument("--tasks", nargs="+", metavar="TASK",
                   help=f"train these tasks instead of the variant's own: {' '.join(TASKS.list())}")
    r.add_argument("--seed", type=int, help="seeds model init, data order and augmentation "
                   "(default: 0; a grid runs seeds 0..N-1, see --seeds)")
    r.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N "
                   "(default: auto)")
    r.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto: bf16 autocast on a CUDA GPU with bf16, else fp32 (TF32 matmuls on CUDA); "
                        "bf16 on CPU falls back to fp32 with a warning (default: auto)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile the model (CUDA only; on CPU it runs eager with a warning)")
    r.add_argument("--data-dir", default=os.environ.get("LEPTON_BENCH_DATA"), metavar="DIR",
                   help="read DIR/<task>/ parquet folders (the Hub's layout) instead of the Hub; "
                        "default: $LEPTON_BENCH_DATA, else the Hub")
    r.add_argument("--steps", type=int, metavar="N", help="optimizer steps; every task gets one "
                   "batch per step (default: 2000)")
    r.add_argument("--limit-train", type=int, metavar="N", help="use a seeded subset of N train "
                   "examples per task (smoke runs)")
    r.add_argument("--limit-eval", type=int, metavar="N", help="use a seeded subset of N validation "
                   "and N test examples per task")
    r.add_argument("--stem", dest="stems", action="append", default=[], metavar="TASK=NAME",
                   help="encode TASK's input with stem NAME (see: list stems), e.g. --stem imdb=bilstm, "
                        "conll2003=hf:bert-base-cased, cifar10=timm:resnet18 (pretrained: the [pretrained] "
                        "extra); with --grid it applies to every run that has TASK, STL baselines included")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 --set "
                        "tasks.imdb.max_len=128 --set model.depth=4 (repeatable)")
    r.add_argument("--out", metavar="DIR",
                   help="--variant: append the record to DIR/runs.jsonl (default: results/adhoc); "
                        "--grid: write DIR/<grid>/ (default: results)")
    g = r.add_argument_group("grid options")
    g.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1 (default: the grid's)")
    g.add_argument("--variants", metavar="PATTERN", help="only the grid's variants matching these "
                   "comma-separated fnmatch patterns, e.g. 'stl-*,hard-ew'")
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runs at a time, each in its own process with cores/N threads (default: 1)")
    g.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    g.add_argument("--executor", default="local", metavar="NAME",
                   help="where the runs execute: local (child processes, default), submitit (Slurm; "
                        "pip install 'lepton-bench[slurm]'), ray (a Ray cluster; 'lepton-bench[ray]')")
    g.add_argument("--executor-config", metavar="FILE",
                   help="JSON file of executor options (the keys of the flags below, e.g. "
                        '{"partition": "gpu", "gpus_per_run": 1}); flags given win')
    g.add_argument("--partition", help="submitit: Slurm partition")
    g.add_argument("--time-min", type=int, metavar="MIN", help="submitit: time limit per run (default: 240)")
    g.add_argument("--cpus-per-run", type=int, metavar="N", help="threads (and Slurm/Ray CPUs) per run")
    g.add_argument("--gpus-per-run", type=int, metavar="N", help="submitit/ray: GPUs per run (default: 0)")
    g.add_argument("--mem-gb", type=float, metavar="GB", help="submitit: memory per run")
    g.add_argument("--cluster", help="submitit: slurm, local (processes here) or debug (in-process); "
                                     "default: Slurm when sbatch is found")
    g.add_argument("--ray-address", metavar="ADDR", help="ray: cluster address (auto, ray://host:10001); "
                                                          "default: start a local Ray")
    g.add_argument("--dry-run", action="store_true", help="print the plan (runs, what is done) and stop")
    r.add_argument("--no-progress", action="store_true",
                   help="no progress bar; log one line per validation instead")

    rp = sub.add_parser("report", help="write reports/<grid>/README.md and plots from a results folder",
                        description="Turn the records of a grid into a markdown report with plots.")
    rp.add_argument("results", help="a results folder (results/<grid>) or its runs.jsonl")
    rp.add_argument("--out", metavar="DIR", help="write the report here (default: reports/<grid>)")

    pp = sub.add_parser("prepare", help="download, check, tokenize and cache the data of tasks or a grid once",
                        description="Fill the tensor cache before runs start (e.g. on a cluster's login "
                                    "node), so that no run downloads or tokenizes, and none hits the Hub "
                                    "at the same time as another.")
    pp.add_argument("--grid", metavar="NAME", help="every data setting the grid's runs use (limits included)")
    pp.add_argument("--tasks", nargs="+", metavar="TASK",
                    help=f"these tasks at their defaults (default: all: {' '.join(TASKS.list())})")
    pp.add_argument("--data-dir", default=os.environ.get("LEPTON_BENCH_DATA"), metavar="DIR",
                    help="local parquet folders instead of the Hub (default: $LEPTON_BENCH_DATA, else the Hub)")
    pp.add_argument("--cache-dir", metavar="DIR", help="where the tensors go (default: $LEPTON_BENCH_CACHE, "
                                                       "else ~/.cache/lepton_bench); runs must read the same")
    pp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides, as given to run (e.g. tasks.imdb.max_len=128)")

    # the child process of one grid run; no help=, so argparse leaves it out of the command list
    wk = sub.add_parser("_worker")
    wk.add_argument("config")
    wk.add_argument("record")

    ls = sub.add_parser("list", help="list registered variants, tasks, architectures, ...",
                        description="List what is registered, with a one-line description each.")
    ls.add_argument("kind", nargs="?", default="variants", choices=KINDS,
                    help="what to list (default: variants)")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'stl-*'")
    return p


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


def _overrides(args) -> list[str]:
    """--set values, then --stem TASK=NAME as ``model.stems.TASK=NAME`` (one task's stem; the
    variant's stems for the other tasks stay)."""
    from .models.stems import STEMS
    from .tasks import TASKS

    stems = []
    for item in args.stems:
        task, sep, name = item.partition("=")
        if not sep:
            raise LeptonError(f"bad --stem {item!r}: expected TASK=NAME, e.g. imdb=embedding")
        STEMS.get(name.strip().partition(":")[0])   # close matches on typos
        stems.append(f"model.stems.{TASKS.get(task.strip()).name}={json.dumps(name.strip())}")
    return list(args.overrides) + stems


def _runtime(args) -> dict:
    """The RunConfig fields that change how, not what, is trained."""
    return {"device": args.device, "data_dir": args.data_dir, "precision": args.precision,
            "compile": args.compile}


def _executor_options(args):
    """Executor options: the --executor-config file, then the flags given."""
    from dataclasses import fields

    from .executors import EXECUTORS, ExecutorOptions

    EXECUTORS.get(args.executor)   # an unknown name fails here, with close matches
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
             "address": args.ray_address}
    opts.update({k: v for k, v in flags.items() if v is not None})
    return ExecutorOptions(workers=args.workers, plugins=tuple(args.plugin), **opts)


def _check_data_dir(data_dir: str | None, tasks) -> None:
    """A bad --data-dir fails now, naming what is missing, not later in every run."""
    if not data_dir:
        return
    if not Path(data_dir).is_dir():
        raise LeptonError(f"--data-dir {data_dir}: no such folder")
    from .data import local_files
    from .tasks import TASKS

    for task in dict.fromkeys(tasks):
        local_files(Path(data_dir), TASKS.get(task))


def cmd_grid(args) -> int:
    from tqdm import tqdm

    from .grid import plan, run_grid
    from .results import adopt, read_record_files

    if args.workers < 1:
        raise LeptonError(f"--workers must be at least 1, got {args.workers}")
    # what a grid would silently ignore is an error instead
    for flag, value, instead in (("--tasks", args.tasks, "each variant trains its own tasks; narrow the grid "
                                                          "with --variants"),
                                 ("--seed", args.seed, "a grid runs seeds 0..N-1: use --seeds N")):
        if value is not None:
            raise LeptonError(f"{flag} is a single-run option ({instead})")
    overrides = _overrides(args) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    runs = plan(args.grid, seeds=args.seeds, variants=args.variants, overrides=overrides,
                limit_train=args.limit_train, limit_eval=args.limit_eval, **_runtime(args))
    _check_data_dir(args.data_dir, [t for r in runs for t in r.config.tasks])
    results_dir = Path(args.out or "results") / args.grid
    if args.dry_run:
        adopt(results_dir)
        return _print_plan(runs, read_record_files(results_dir), results_dir, args.retry_failed)
    bar = tqdm(total=len(runs), unit="run", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)

    def progress(event, info):
        if event == "plan":
            bar.update(info["skipped"])
            bar.set_postfix(skipped=info["skipped"])
        elif event == "run":
            rec = info["record"]
            bar.update(1)
            bar.set_postfix(finished=info["finished"], failed=info["failed"], remaining=info["remaining"])
            if rec["status"] != "ok":
                bar.write(f"failed: {rec['run_id']}: {rec.get('error')}", file=sys.stderr)
            elif args.no_progress:
                c = rec["cost"]
                print(f"done: {rec['run_id']} (train {c['train_seconds']:.0f}s + eval {c['eval_seconds']:.0f}s)",
                      file=sys.stderr, flush=True)

    try:
        s = run_grid(runs, results_dir, retry_failed=args.retry_failed, progress=progress,
                     executor=args.executor, options=_executor_options(args))
    finally:
        bar.close()
    print(f"grid {args.grid}: {s.planned} runs planned, {s.skipped} already recorded, {s.finished} finished, "
          f"{s.failed} failed; records in {s.results}")
    print(f"report: python -m lepton_bench report {results_dir}")
    return 0 if s.failed == 0 else 1


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
        state = "done" if rec and rec["status"] == "ok" else ("failed" if rec else "to run")
        if state == "to run" or (state == "failed" and retry_failed):
            todo += 1
            if r.config.variant in secs:
                estimate += sum(secs[r.config.variant]) / len(secs[r.config.variant])
        rows.append([r.run_id, r.config.variant, r.config.seed, r.config.train.steps, state])
    print(tabulate(rows, headers=["run", "variant", "seed", "steps", "state"], tablefmt="github"))
    counts = Counter(row[-1] for row in rows)
    print(f"\n{len(runs)} runs into {results_dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + (f"; about {estimate / 60:.0f} min for the runs whose variant has finished before" if estimate else ""))
    return 0


def cmd_run(args) -> int:
    from tabulate import tabulate

    for flag, value in (("--limit-train", args.limit_train), ("--limit-eval", args.limit_eval),
                        ("--steps", args.steps), ("--seeds", args.seeds)):
        if value is not None and value < 1:
            raise LeptonError(f"{flag} must be at least 1, got {value}")
    if args.grid:
        return cmd_grid(args)
    grid_only = {"--seeds": args.seeds is not None, "--variants": args.variants is not None,
                 "--workers": args.workers != 1, "--retry-failed": args.retry_failed, "--dry-run": args.dry_run,
                 "--executor": args.executor != "local", "--executor-config": args.executor_config is not None,
                 **{f"--{k.replace('_', '-')}": getattr(args, k) is not None
                    for k in ("partition", "time_min", "cpus_per_run", "gpus_per_run", "mem_gb", "cluster",
                              "ray_address")}}
    given = [flag for flag, on in grid_only.items() if on]
    if given:
        raise LeptonError(f"{', '.join(given)}: grid option{'s' if len(given) > 1 else ''}; use with --grid")

    from .results import append_record
    from .train import run
    from .variants import make_config

    overrides = _overrides(args)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    cfg = make_config(args.variant, args.tasks, seed=args.seed or 0, overrides=overrides,
                      limit_train=args.limit_train, limit_eval=args.limit_eval, **_runtime(args))
    _check_data_dir(args.data_dir, cfg.tasks)
    from .distributed import world_from_env

    main_rank = world_from_env().main   # under torchrun only rank 0 reports and records
    bar = _Bar(cfg.train.steps, enabled=not args.no_progress and main_rank)
    try:
        record = run(cfg, bar if main_rank else None)
    finally:
        bar.close()
    if record is None:
        return 0
    out = Path(args.out or "results/adhoc") / "runs.jsonl"
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


def cmd_prepare(args) -> int:
    import time

    from tabulate import tabulate

    from .data import cache_key, default_cache_dir, load_task
    from .grid import plan
    from .tasks import TASKS
    from .train import task_reads
    from .variants import make_config

    if args.grid and args.tasks:
        raise LeptonError("give --grid or --tasks, not both")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise LeptonError(f"--data-dir {args.data_dir}: no such folder")
    if args.cache_dir:
        os.environ["LEPTON_BENCH_CACHE"] = str(Path(args.cache_dir).resolve())
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
    return 0


def cmd_worker(args) -> int:
    from .grid import worker

    return worker(args.config, args.record)


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(Path(args.results), Path(args.out) if args.out else None)
    print(f"report written to {path}")
    return 0


def _plugin_flags(argv: list[str]) -> tuple[list[str], bool]:
    """(``--plugin`` modules, ``--no-plugins``) from the global options before the command, read
    ahead of the parser, whose help lists the registries with the plugins' entries in them.
    Unique prefixes count, as argparse takes them (``--no``, ``--plug=m``)."""
    modules, skip = [], False
    it = iter(argv)
    for a in it:
        if not a.startswith("--") or a == "--":
            if a.startswith("-"):
                continue   # -h
            break          # the command: its own options follow
        flag, eq, value = a.partition("=")
        if len(flag) > 2 and "--no-plugins".startswith(flag):
            skip = True
        elif len(flag) > 2 and "--plugin".startswith(flag):
            modules.append(value if eq else next(it, ""))
    return [m for m in modules if m], skip


def _load_plugins(modules: list[str]) -> None:
    """Load the plugins; their warnings as one ``lepton-bench: warning: ...`` line each."""
    import warnings

    from .plugins import PluginWarning, load_plugins

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PluginWarning)
            load_plugins(modules)
    finally:
        for w in caught:
            if issubclass(w.category, PluginWarning):
                print(f"lepton-bench: warning: {w.message}", file=sys.stderr)
            else:   # a plugin's own warnings, as Python would show them
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    from .plugins import NO_PLUGINS_ENV

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        modules, no_plugins = _plugin_flags(argv)
        if no_plugins:
            os.environ[NO_PLUGINS_ENV] = "1"   # the grid's worker processes inherit it
        _load_plugins(modules)
        args = build_parser().parse_args(argv)
        code = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "prepare": cmd_prepare,
                "_worker": cmd_worker}[args.command](args)
        sys.stdout.flush()   # a reader that has gone (``| head``) shows here, not at exit
        return code
    except BrokenPipeError:
        # the Python docs' recipe: no more output, and no second error when Python flushes at exit
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):   # a stdout without a file descriptor (captured): nothing to flush
            pass
        return 1
    except LeptonError as e:
        print(f"lepton-bench: error: {_first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lepton-bench: interrupted; nothing was recorded for the unfinished run", file=sys.stderr)
        return 130
