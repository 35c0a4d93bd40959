"""The argument parser: every command and flag, with help texts built from the registries."""

from __future__ import annotations

import argparse
import os

KINDS = ("variants", "grids", "tasks", "metrics", "architectures", "stems", "trunks", "weightings", "samplers",
         "executors", "trackers")


def _registries():
    from ..grid.executors import EXECUTORS
    from ..grid.presets import GRIDS
    from ..models import ARCHITECTURES
    from ..models.stems import STEMS
    from ..models.trunk import TRUNKS
    from ..run.sampling import SAMPLERS
    from ..run.trackers import TRACKERS
    from ..tasks import METRICS, TASKS
    from ..variants import VARIANTS
    from ..weighting import WEIGHTINGS

    return {"variants": VARIANTS, "grids": GRIDS, "tasks": TASKS, "metrics": METRICS, "architectures": ARCHITECTURES,
            "weightings": WEIGHTINGS, "samplers": SAMPLERS, "executors": EXECUTORS, "stems": STEMS,
            "trunks": TRUNKS, "trackers": TRACKERS}


def build_parser() -> argparse.ArgumentParser:
    """The parser; its help lists registered names, so load plugins first (``main`` does)."""
    from ..grid.presets import GRIDS
    from ..run.trackers import TRACKERS
    from ..tasks import TASKS

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
    r.add_argument("--log", action="append", default=[], metavar="TRACKER",
                   help=f"also log the run (each run of a grid) to an experiment tracker: {', '.join(TRACKERS.list())} "
                        "(repeatable; optional extras, e.g. pip install 'lepton-bench[tensorboard]'); offline by "
                        "default, one tracker run per run, named by its run id")
    r.add_argument("--log-dir", metavar="DIR",
                   help="where the trackers write (default: OUT/<grid>/trackers with --grid, else OUT/trackers, "
                        "OUT being results/adhoc for one run)")
    g = r.add_argument_group("grid options")
    g.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1 (default: the grid's)")
    g.add_argument("--variants", metavar="PATTERN", help="only the grid's variants matching these "
                   "comma-separated fnmatch patterns, e.g. 'stl-*,hard-ew'")
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runs at a time, each in its own process with cores/N threads (default: 1)")
    g.add_argument("--runs-per-device", type=int, metavar="N",
                   help="local executor: pack N runs at a time on each visible GPU, each its own process with "
                        "CUDA_VISIBLE_DEVICES set to its GPU (N at a time on the CPU without one), cores/slots "
                        "threads each; each record's env.packed says so, and the report (default: 1; not with "
                        "--workers)")
    g.add_argument("--process-per-run", action="store_true",
                   help="local executor: a fresh process for every run (imports and start-up each time, about 12 s "
                        "here) instead of one warm worker per slot that serves run after run")
    g.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                   help="a search axis: every variant, STL included, runs at each value (the product of all "
                        "axes; replaces the grid's axis of that key), e.g. --sweep train.lr=1e-3,2e-3,4e-3 "
                        "(repeatable); the report selects each variant's point on validation")
    g.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    g.add_argument("--wait", action="store_true",
                   help="when another grid is running in the same --out folder, wait for it to end instead of "
                        "exiting (one grid per folder at a time)")
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
    rp.add_argument("--csv", action="store_true",
                    help="also write runs.csv next to it: one row per run x task (lepton_bench.results.load)")

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

    cache_dir = argparse.ArgumentParser(add_help=False)
    cache_dir.add_argument("--cache-dir", metavar="DIR",
                           help="the tensor cache (default: $LEPTON_BENCH_CACHE, else ~/.cache/lepton_bench)")
    cp = sub.add_parser("cache", help="list or clear the tensor cache (one file per task and data setting)",
                        description="The tensor cache holds one file per task and data setting (limits, "
                                    "max_len, tokenizer, ...). After each new file, the least recently used "
                                    "files are evicted until the cache fits in $LEPTON_BENCH_CACHE_MAX_GB "
                                    "(default: 5; 0 or none: no cap).")
    csub = cp.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    csub.add_parser("list", parents=[cache_dir], help="every cache file: task, size, last use; the total and the cap",
                    description="Every cache file, least recently used (evicted first) at the top, with "
                                "the total against the cap.")
    cc = csub.add_parser("clear", parents=[cache_dir],
                         help="delete cache files: all of them (no question asked) unless --task/--older-than",
                         description="Delete cache files and print what was freed. Without --task or "
                                     "--older-than it deletes EVERY cache file, without asking; runs rebuild "
                                     "what they need.")
    cc.add_argument("--task", dest="tasks", action="extend", nargs="+", metavar="NAME",
                    help="only these tasks' files (repeatable)")
    cc.add_argument("--older-than", type=float, metavar="DAYS",
                    help="only files last used more than DAYS days ago (fractions allowed: 0.5)")
    csub.add_parser("dir", parents=[cache_dir], help="print the cache directory",
                    description="Print the tensor cache's directory.")

    # the child process of one grid run; no help=, so argparse leaves it out of the command list
    wk = sub.add_parser("_worker")
    wk.add_argument("config", nargs="?")
    wk.add_argument("record", nargs="?")
    wk.add_argument("--serve", action="store_true", help="a warm worker: jobs as JSON lines on stdin")

    ls = sub.add_parser("list", help="list registered variants, tasks, architectures, ...",
                        description="List what is registered, with a one-line description each.")
    ls.add_argument("kind", nargs="?", default="variants", choices=KINDS,
                    help="what to list (default: variants)")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'stl-*'")
    return p
