"""One device check: what a person with a GPU runs once, in at most 8 minutes on one GPU.

    python benchmarks/device_check.py [--device auto|cpu|cuda] [--data-dir ../shared/data] [--smoke] [--out DIR]

It checks, on the device, what CPU runs cannot: (1) every registered variant trains a few steps with the
run's precision (bf16 autocast where the GPU has it) and again compiled (``torch.compile``): finite losses,
every parameter group moved; (2) one full run per mode: the record's memory, throughput and (CUDA) MFU
fields filled and plausible; (3) the harness overhead against a hand-written step (``hard-ew``,
interleaved); (4) each input's train stream against its training step rate; (5) a packed mini-grid (two
runs per device at a time) whose records say so. It writes one JSON under ``benchmarks/results/`` named
by device and versions (``<tag>-device_check.json``), prints a short table, and exits 1 when a check
failed. On CPU (``--smoke``, the default there) the same checks run at smoke size — a variant of each
architecture and weighting family, 2 steps on 256 examples — so CI runs it and it cannot rot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:   # run as a script: `benchmarks` is importable from the repository root
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lepton_bench.run.measure import environment, now, resolve_device, sync  # noqa: E402
from lepton_bench.run.train import next_batches, prepare, run, train_step  # noqa: E402
from lepton_bench.variants import VARIANTS, make_config  # noqa: E402

SCHEMA = 1
# smoke size: one variant of each architecture and of each weighting family (loss, gradient, two
# batches, look-ahead), a one-task sampler, and the same-input group
SMOKE_VARIANTS = ("stl-cifar10", "hard-ew", "hard-uw", "hard-famo", "hard-pcgrad", "hard-modo", "hard-auto_lambda",
                  "soft_l2-ew", "mmoe-ew", "adapters-ew", "cgc-ew", "hard-ew-round_robin", "tagging-hard-ew",
                  "tagging-mtan-ew")
# compiled on a GPU: one of each kind of graph (compiling takes tens of seconds a model, so not all of them)
COMPILED_VARIANTS = ("hard-ew", "hard-pcgrad", "mmoe-ew", "tagging-hard-ew")


def _limits(smoke: bool) -> dict[str, Any]:
    return {"limit_train": 256 if smoke else 2048, "limit_eval": 64 if smoke else 512}


def check_variant(variant: str, device: str, data_dir: str, smoke: bool, compile_: bool) -> dict[str, Any]:
    """A few training steps of ``variant``: finite losses, every parameter group moved, the step time."""
    steps = 2 if smoke else 5
    cfg = make_config(variant, device=device, data_dir=data_dir, compile=compile_, **_limits(smoke))
    s = prepare(cfg)
    shared, own = s.model.parameter_split()
    before = {id(p): p.detach().clone() for p in s.model.parameters()}
    times, finite = [], True
    for k in range(1, steps * (1 if s.sampler.every_task_every_step else len(s.names)) + 1):
        t0 = now(s.device)
        losses = train_step(s, next_batches(s, k))
        sync(s.device)
        times.append(now(s.device) - t0)
        finite &= all(math.isfinite(float(v)) for v in losses.values())
    groups = {"shared": shared, **own}
    moved = {g: any(not torch.equal(before[id(p)], p.detach()) for p in ps) for g, ps in groups.items() if ps}
    return {"variant": variant, "compile": compile_, "precision": s.runtime["precision"],
            "compiled": s.runtime["compiled"], "notes": s.runtime["notes"], "steps": len(times),
            "step_ms": 1000 * statistics.median(times[1:] or times), "finite": finite, "moved": moved,
            "ok": finite and all(moved.values())}


def check_record(device: str, data_dir: str, smoke: bool, compile_: bool) -> dict[str, Any]:
    """One full run of hard-ew: the record's cost fields filled and plausible for the device."""
    steps = 6 if smoke else 60
    cfg = make_config("hard-ew", device=device, data_dir=data_dir, compile=compile_, **_limits(smoke),
                      overrides=[f"train.steps={steps}", f"train.eval_every={steps}", "train.log_every=3",
                                 "train.timing_warmup=2", "train.diagnose_every=3"])
    rec = run(cfg)
    c = rec["cost"]
    cuda = rec["env"]["device"].startswith("cuda")
    plausible = {
        "steps_per_s": (c.get("steps_per_s") or 0) > 0,
        "samples_per_s": all((t.get("samples_per_s") or 0) > 0 for t in c["tasks"].values()),
        "peak_rss_mb": c["memory"].get("peak_rss_mb", 0) > 0,
        "flops_per_step": c.get("flops_per_step", 0) > 0,
        "diagnostics": bool(rec["curves"].get("diagnostics")),
    }
    if cuda:
        plausible["cuda_max_allocated_mb"] = 0 < c["memory"].get("cuda_max_allocated_mb", 0) <= \
            torch.cuda.get_device_properties(0).total_memory / 2**20
        plausible["mfu"] = c.get("mfu") is not None and 0 < c["mfu"] <= 1
        plausible["model_tflops_per_s"] = (c.get("model_tflops_per_s") or 0) > 0
    return {"compile": compile_, "precision": rec["env"].get("precision"), "compiled": rec["env"].get("compiled"),
            "steps_per_s": c.get("steps_per_s"), "mfu": c.get("mfu"), "memory": c["memory"],
            "plausible": plausible, "ok": rec["status"] == "ok" and all(plausible.values())}


def check_overhead(device: str, data_dir: str, smoke: bool) -> dict[str, Any]:
    """lepton_bench's hard-ew step against the hand-written one on the same batches, interleaved."""
    from benchmarks.test_overhead import hand_written_step

    s = prepare(make_config("hard-ew", device=device, data_dir=data_dir, **_limits(smoke)))
    raw = hand_written_step(s)
    pairs, warm = (3, 1) if smoke else (15, 3)
    ratios, harness, hand = [], [], []
    for k in range(1, pairs + warm + 1):
        b = next_batches(s, k)
        sides = [(harness, lambda b=b: train_step(s, b)), (hand, lambda b=b: raw(b))]
        for times, fn in sides if k % 2 else sides[::-1]:
            t0 = now(s.device)
            fn()
            sync(s.device)
            times.append(now(s.device) - t0)
        if k > warm:
            ratios.append(harness[-1] / hand[-1])
    ratio = statistics.median(ratios)
    return {"harness_ms": 1000 * statistics.median(harness[warm:]), "hand_written_ms": 1000 * statistics.median(
        hand[warm:]), "overhead_ratio": ratio, "ok": smoke or ratio <= 1.05}


def check_data(device: str, data_dir: str, smoke: bool) -> dict[str, Any]:
    """Each input's train stream (batches/s) against its STL model's training steps/s."""
    out = {}
    for variant in ("stl-cifar10", "stl-imdb", "stl-conll2003"):
        s = prepare(make_config(variant, device=device, data_dir=data_dir, **_limits(smoke)))
        stream = next(iter(s.streams.values()))
        draws = 5 if smoke else 50

        def timed(fn: Callable[[], object], n: int, s=s) -> float:
            sync(s.device)
            t0 = now(s.device)
            for _ in range(n):
                fn()
            sync(s.device)
            return (now(s.device) - t0) / n

        batch_s = timed(lambda stream=stream: next(stream), draws)
        k = iter(range(1, 10_000))
        step_s = timed(lambda s=s, k=k: train_step(s, next_batches(s, next(k))), 2 if smoke else 10)
        out[variant] = {"batches_per_s": 1 / batch_s, "steps_per_s": 1 / step_s, "stream_vs_step": step_s / batch_s}
    return {"inputs": out, "ok": smoke or all(v["stream_vs_step"] >= 10 for v in out.values())}


def check_packed(device: str, data_dir: str, smoke: bool) -> dict[str, Any]:
    """A mini-grid of two smoke runs, two at a time on the device: both records ok and marked packed."""
    from lepton_bench.grid.executors import ExecutorOptions
    from lepton_bench.grid.plan import plan
    from lepton_bench.grid.runner import run_grid
    from lepton_bench.results import read_records, runs_path

    if "runs_per_device" not in ExecutorOptions.__dataclass_fields__:
        return {"ok": True, "skipped": "this version has no --runs-per-device"}
    with tempfile.TemporaryDirectory() as tmp:
        runs = plan("smoke", seeds=1, variants="stl-imdb,stl-conll2003", device=device, data_dir=data_dir)
        summary = run_grid(runs, Path(tmp) / "smoke", options=ExecutorOptions(runs_per_device=2))
        records = read_records(runs_path(Path(tmp) / "smoke"))
    packed = [r.get("env", {}).get("packed") for r in records]
    return {"runs": len(records), "failed": summary.failed, "packed": packed,
            "ok": summary.failed == 0 and len(records) == 2 and all(packed)}


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A check's result, or its error (one failing check does not stop the others)."""
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:   # recorded in the JSON and the table: the check failed
        out = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
               "traceback": traceback.format_exc()[-2000:]}
    out["seconds"] = time.perf_counter() - t0
    print(f"  {name}: {'ok' if out['ok'] else 'FAILED ' + out.get('error', '')} ({out['seconds']:.0f} s)",
          flush=True)
    return out


def machine_tag(device: torch.device) -> str:
    from benchmarks.conftest import machine_tag as tag

    return tag(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=os.environ.get("LEPTON_BENCH_DEVICE", "auto"))
    p.add_argument("--data-dir", default=os.environ.get("LEPTON_BENCH_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--smoke", action="store_true", help="smoke size (the default on CPU)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder of the JSON")
    p.add_argument("--budget", type=float, default=480.0,
                   help="seconds: variant checks stop at 60%% of it so the rest fits (default 480: 8 minutes)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    smoke = args.smoke or device.type == "cpu"
    dev, data = str(device), args.data_dir
    variants = SMOKE_VARIANTS if smoke else tuple(VARIANTS.list())
    print(f"device check on {dev} ({'smoke size' if smoke else 'full'}): {len(variants)} variants", flush=True)
    started = time.perf_counter()
    checks: dict[str, Any] = {"variants": [], "compiled": [], "skipped": []}
    compiled = ("hard-ew",) if smoke else COMPILED_VARIANTS   # on CPU compile runs eager: one shows the note
    for v in variants:
        if time.perf_counter() - started > 0.6 * args.budget:   # leave the rest of the budget to the other checks
            checks["skipped"].append(v)
            continue
        checks["variants"].append(guarded(f"{v}", lambda v=v: check_variant(v, dev, data, smoke, False)))
        if v in compiled:
            checks["compiled"].append(guarded(f"{v} compiled", lambda v=v: check_variant(v, dev, data, smoke, True)))
    checks["record"] = guarded("record", lambda: check_record(dev, data, smoke, False))
    checks["record_compiled"] = guarded("record compiled", lambda: check_record(dev, data, smoke, True))
    checks["overhead"] = guarded("harness overhead", lambda: check_overhead(dev, data, smoke))
    checks["data"] = guarded("data pipeline", lambda: check_data(dev, data, smoke))
    checks["packed"] = guarded("packed mini-grid", lambda: check_packed(dev, data, smoke))
    ok = all(c["ok"] for c in checks["variants"] + checks["compiled"]) and all(
        checks[k]["ok"] for k in ("record", "record_compiled", "overhead", "data", "packed"))
    result = {"schema": SCHEMA, "ok": ok, "smoke": smoke, "seconds": time.perf_counter() - started,
              "env": environment(device), "checks": checks}
    out = Path(args.out) / f"{machine_tag(device)}-device_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    bad = [c["variant"] + (" compiled" if c.get("compile") else "") for c in checks["variants"] + checks["compiled"]
           if not c["ok"]]
    r = checks["record"]
    print(f"\n{'ok' if ok else 'FAILED'} in {result['seconds']:.0f} s -> {out}")
    skipped = f"; {len(checks['skipped'])} not checked within the time budget" if checks["skipped"] else ""
    print(f"  variants: {len(checks['variants']) - len([b for b in bad if 'compiled' not in b])}/"
          f"{len(checks['variants'])} ok{'; failed: ' + ', '.join(bad) if bad else ''}{skipped}")
    print(f"  record: precision {r.get('precision')}, {r.get('steps_per_s') or 0:.2f} steps/s, MFU "
          f"{r.get('mfu') if r.get('mfu') is not None else '—'}, memory {r.get('memory')}")
    print(f"  harness overhead: {checks['overhead'].get('overhead_ratio', float('nan')):.3f}x; data: "
          + ", ".join(f"{k} {v['stream_vs_step']:.0f}x" for k, v in checks["data"].get("inputs", {}).items()))
    print(f"  packed: {checks['packed'].get('skipped') or checks['packed'].get('packed')}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
