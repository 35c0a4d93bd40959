"""Clocks, memory, FLOPs and the environment stamp of every record.

CUDA is synchronized before a clock is read; CPU runs report the process's peak RSS (Linux:
``VmHWM``, which a warm grid worker resets before each of its runs; elsewhere ``ru_maxrss``).
"""

from __future__ import annotations

import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device "
                          f"(torch {torch.__version__}); use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu or cuda[:N]")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> tuple[str, str | None]:
    """(precision used, why it differs from the one asked for). bf16 autocast runs on CUDA only:
    CPU autocast is slower than fp32 on most CPUs, so there it falls back to fp32."""
    if name not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"unknown precision {name!r}: use auto, bf16 or fp32")
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        return ("bf16" if bf16_ok else "fp32"), None
    if name == "bf16" and not bf16_ok:
        return "fp32", f"bf16 autocast needs a CUDA GPU with bf16; ran fp32 on {device.type}"
    return name, None


# Dense peak tensor throughput in TFLOP/s from the vendors' data sheets (no sparsity), for MFU.
# "fp32" is the TF32 tensor-core rate: fp32 matmuls run as TF32 on CUDA here (allow_tf32).
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 494.0},
    "H100 SXM": {"bf16": 989.0, "fp32": 494.0},
    "H100 NVL": {"bf16": 835.0, "fp32": 418.0},
    "H100 PCIe": {"bf16": 756.0, "fp32": 378.0},
    "H100": {"bf16": 989.0, "fp32": 494.0},        # "NVIDIA H100 80GB HBM3" is the SXM part
    "A100": {"bf16": 312.0, "fp32": 156.0},
    "L40S": {"bf16": 362.0, "fp32": 183.0},
    "L4": {"bf16": 121.0, "fp32": 60.0},
    "A10": {"bf16": 125.0, "fp32": 62.5},
}


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The data-sheet peak of a known GPU (the longest name that matches as whole words), else None."""
    name = device_name.upper()
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if re.search(rf"(?<![A-Z0-9]){re.escape(key.upper())}(?![A-Z0-9])", name):
            return PEAK_TFLOPS[key][precision]
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """A clock reading after all queued device work has finished."""
    sync(device)
    return time.perf_counter()


class TrainingClock:
    """Training wall time, paused for what is not training (evaluation, diagnostics), whose time is
    kept apart by kind; ``timed`` counts from ``start_timing`` on (throughput's steps)."""

    def __init__(self, device: torch.device, timed_from_start: bool):
        self.device = device
        self.since = now(device)
        self.timed_from = self.since if timed_from_start else None
        self.train = self.timed = 0.0
        self.paused: dict[str, float] = {}

    def start_timing(self) -> None:
        self.timed_from = now(self.device)

    @contextmanager
    def pause(self, kind: str) -> Iterator[None]:
        stop = now(self.device)
        self.train += stop - self.since
        if self.timed_from is not None:
            self.timed += stop - max(self.since, self.timed_from)
        try:
            yield
        finally:
            self.since = now(self.device)
            self.paused[kind] = self.paused.get(kind, 0.0) + self.since - stop


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _proc_status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory figure (``VmHWM``, ``VmRSS``) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024   # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """The process's resident high-water mark in MiB: ``VmHWM`` on Linux (``reset_peak_rss`` restarts it),
    else ``ru_maxrss`` (since the process started)."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float | None:
    """The process's resident memory now, in MiB (Linux; else None)."""
    return _proc_status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Restart the resident high-water mark at the current RSS (Linux >= 4.0: ``5`` to ``clear_refs``), so
    that a warm worker's next run reports its own peak; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def release_memory() -> None:
    """Hand back what a finished run left: Python garbage, the CUDA cache, and glibc's free heap pages."""
    import ctypes
    import gc

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak memory in MiB: CUDA allocated/reserved since the reset, and the process's peak RSS."""
    out = {"peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["cuda_max_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    return out


def max_memory(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """The larger of two peak-memory readings, figure by figure."""
    return {k: max(a.get(k, 0.0), b.get(k, 0.0)) for k in {**a, **b}}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()`` by ``torch.utils.flop_counter`` (matmuls, convs, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def git_hash() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("-dirty" if dirty else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, object]:
    from .. import __version__

    env = {"lepton_bench": __version__, "git": git_hash(), "python": sys.version.split()[0],
           "torch": torch.__version__, "cuda": torch.version.cuda, "platform": platform.platform(),
           "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "device": device.type,
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()}
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError:
        pass
    from .runenv import packing, warm_run

    packed = packing()   # a run the executor packed with others on its device (--runs-per-device)
    if packed:
        env["packed"] = packed
    served = warm_run()   # a run of a warm worker: which of its runs
    if served:
        env["worker"] = served
    return env
