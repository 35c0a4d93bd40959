"""Training-step time of every registered variant relative to hard-ew, on real batches.

    python benchmarks/variant_step_times.py --data-dir ../shared/data [--steps 10] [--variants 'hard-*']

Each variant is built exactly as ``lepton_bench run`` builds it (``train.prepare``), then
``train.train_step`` runs on its own real batches: ``--warmup`` steps are discarded, the
median of ``--steps`` timed steps is reported. Samplers that give one task per step need T
times the steps, so the run-cost column multiplies their step time by T. Writes a CSV named
by CPU and torch version under benchmarks/results/ and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate

from lepton_bench.measure import cpu_name
from lepton_bench.plugins import load_plugins
from lepton_bench.train import prepare, train_step
from lepton_bench.variants import VARIANTS, make_config


def step_times(variant: str, data_dir: str, steps: int, warmup: int, device: str) -> list[float]:
    s = prepare(make_config(variant, device=device, data_dir=data_dir))
    s.model.train()
    times = []
    for step in range(1, warmup + steps + 1):
        batches = {n: next(s.streams[n]) for n in s.sampler.tasks_at(step)}
        if s.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(s, batches)
        if s.device.type == "cuda":
            torch.cuda.synchronize()
        if step > warmup:
            times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--variants", default="*")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    load_plugins()
    names = VARIANTS.list(args.variants)
    if "hard-ew" not in names:
        names = ["hard-ew", *names]
    rows = {}
    for name in names:
        t = step_times(name, args.data_dir, args.steps, args.warmup, args.device)
        v = VARIANTS.get(name)
        one_task = v.sampler != "all"
        rows[name] = {"variant": name, "architecture": v.architecture, "weighting": v.weighting,
                      "sampler": v.sampler, "tasks": len(v.tasks),
                      "median_ms": 1000 * statistics.median(t),
                      "steps_factor": len(v.tasks) if one_task else 1}
        print(f"{name}: {rows[name]['median_ms']:.0f} ms/step", file=sys.stderr, flush=True)
    base = rows["hard-ew"]["median_ms"]
    for r in rows.values():
        r["step_vs_hard_ew"] = r["median_ms"] / base
        r["run_cost_vs_hard_ew"] = r["median_ms"] * r["steps_factor"] / base
    tag = re.sub(r"[^A-Za-z0-9]+", "-", f"{cpu_name()}-torch{torch.__version__}").strip("-")
    subset = "" if args.variants == "*" else "-" + re.sub(r"[^A-Za-z0-9]+", "_", args.variants).strip("_")
    out = Path(__file__).parent / "results" / f"variant_step_times{subset}-{args.device}-{tag}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(next(iter(rows.values()))))
        w.writeheader()
        w.writerows(rows.values())
    table = [[r["variant"], f"{r['median_ms']:.0f}", f"{r['step_vs_hard_ew']:.2f}",
              f"{r['run_cost_vs_hard_ew']:.2f}"] for r in sorted(rows.values(), key=lambda r: r["median_ms"])]
    print(tabulate(table, headers=["variant", "ms / step", "step vs hard-ew", "run cost vs hard-ew"],
                   tablefmt="github"))
    print(f"\n{args.device}: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.steps} steps after {args.warmup} warm-up; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
