"""Markdown tables from a benchmark JSON (``pytest benchmarks/ --benchmark-only --save-results`` writes one).

    python benchmarks/table.py [benchmarks/results/<machine>.json]

Prints: step time of every variant and its run cost relative to hard-ew; the harness
overhead ratios; the data pipeline and evaluation figures. The README's tables come from here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tabulate import tabulate


def load(path: Path) -> tuple[dict, dict[str, dict]]:
    blob = json.loads(path.read_text())
    by_name = {}
    for b in blob["benchmarks"]:
        param = b.get("param") or b["name"].split("::")[-1]
        by_name[f"{b['name'].split('[')[0]}[{param}]"] = b
    return blob, by_name


def of(by_name: dict, test: str) -> dict[str, dict]:
    return {k.split("[", 1)[1][:-1]: v for k, v in by_name.items() if k.startswith(test + "[")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        path = Path(argv[0])
    else:
        found = sorted((Path(__file__).parent / "results").glob("*.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            print("no benchmark results: run  pytest benchmarks/ --benchmark-only --save-results", file=sys.stderr)
            return 1
        path = found[-1]
    blob, by_name = load(path)
    machine = blob["machine_info"]
    print(f"from {path.name}: {machine.get('cpu', {}).get('brand_raw', machine.get('processor'))}, "
          f"python {machine.get('python_version')}, {blob['datetime'][:10]}\n")

    steps = of(by_name, "test_step_time")
    if steps:
        def typical(b):   # one-task samplers: steps of different tasks, so the mean
            return b["stats"]["mean" if b["extra_info"]["steps_factor"] > 1 else "median"]

        base = typical(steps["hard-ew"]) if "hard-ew" in steps else None
        rows = []
        for name, b in sorted(steps.items(), key=lambda kv: typical(kv[1])):
            med, info = typical(b), b["extra_info"]
            rows.append([name, info["architecture"], info["weighting"], info["sampler"], f"{1000 * med:.0f}",
                         f"{med / base:.2f}" if base else "—",
                         f"{med * info['steps_factor'] / base:.2f}" if base else "—"])
        print(tabulate(rows, headers=["variant", "architecture", "weighting", "sampler", "ms / step",
                                      "step vs hard-ew", "run vs hard-ew"], tablefmt="github"))
        print()

    over = of(by_name, "test_harness_overhead")
    if over:
        rows = [[name, f"{b['extra_info']['harness_ms']:.0f}", f"{b['extra_info']['hand_written_ms']:.0f}",
                 f"{b['extra_info']['overhead_ratio']:.3f}"] for name, b in over.items()]
        print(tabulate(rows, headers=["variant", "lepton_bench step (ms)", "hand-written step (ms)",
                                      "overhead ratio"], tablefmt="github"))
        print()

    gram = of(by_name, "test_gramian_method_step_by_task_rows_and_by_autogram")
    if gram:   # one row a method, the two settings side by side
        methods = sorted({b["extra_info"]["method"] for b in gram.values()})
        settings = sorted({b["extra_info"]["setting"] for b in gram.values()})
        info = {(b["extra_info"]["method"], b["extra_info"]["setting"]): b["extra_info"] for b in gram.values()}
        rows = [[f"`{m}`", *(f"{info[m, st]['per_task_vs_ew']:.2f}× / {info[m, st]['autogram_vs_ew']:.2f}×"
                             if (m, st) in info and "per_task_vs_ew" in info[m, st] else "—" for st in settings)]
                for m in methods]
        ew = {st: next(i["ew_ms"] for (m, s2), i in info.items() if s2 == st and "ew_ms" in i) for st in settings
              if any(s2 == st and "ew_ms" in i for (m, s2), i in info.items())}
        print(tabulate(rows, headers=["method", *(f"{st}: per task / autogram ÷ hard-EW (≈{ew.get(st, 0):.0f} ms)"
                                                  for st in settings)], tablefmt="github"))
        print()

    rows = []
    if "test_cached_load_of_all_tasks" in {k.split("[")[0] for k in by_name}:
        b = next(v for k, v in by_name.items() if k.startswith("test_cached_load_of_all_tasks"))
        rows.append(["cached load, all three tasks", f"{b['stats']['median']:.2f} s",
                     f"{b['extra_info']['examples']:,} examples"])
    for task, b in of(by_name, "test_first_load").items():
        rows.append([f"first load (parquet → tensors), {task}", f"{b['stats']['median']:.1f} s",
                     f"{b['extra_info']['examples_per_s']:,.0f} examples/s"])
    for task, b in of(by_name, "test_train_stream").items():
        i = b["extra_info"]
        rows.append([f"train batches, {task}", f"{1000 * b['stats']['median']:.2f} ms / batch",
                     f"{i['batches_per_s']:,.0f} batches/s = {i['stream_vs_step']:.0f}× its STL step rate"])
    for task, b in of(by_name, "test_evaluation").items():
        rows.append([f"evaluation, {task}", f"{b['stats']['median']:.2f} s / {b['extra_info']['examples']} examples",
                     f"{b['extra_info']['samples_per_s']:,.0f} examples/s"])
    if rows:
        print(tabulate(rows, headers=["data and evaluation", "median time", "rate"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
