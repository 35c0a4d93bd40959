"""Precision resolution and the GPU peak table behind MFU."""

from __future__ import annotations

import pytest
import torch

from lepton_bench.errors import ConfigError
from lepton_bench.run.measure import PEAK_TFLOPS, peak_tflops, resolve_precision

CPU = torch.device("cpu")


def test_precision_on_cpu_is_fp32_and_says_why_when_bf16_was_asked():
    assert resolve_precision("auto", CPU) == ("fp32", None)
    assert resolve_precision("fp32", CPU) == ("fp32", None)
    used, why = resolve_precision("bf16", CPU)
    assert used == "fp32" and "bf16" in why and "cpu" in why
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", CPU)


@pytest.mark.parametrize(("name", "key"), [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA L40S", "L40S"), ("NVIDIA L4", "L4"), ("NVIDIA A10", "A10"),
])
def test_known_gpus_get_their_data_sheet_peak(name, key):
    for precision in ("bf16", "fp32"):
        assert peak_tflops(name, precision) == PEAK_TFLOPS[key][precision]


@pytest.mark.parametrize("name", ["NVIDIA A10G", "Tesla T4", "AMD EPYC 7B13", "NVIDIA GeForce RTX 4090"])
def test_unknown_devices_get_no_peak_rather_than_a_wrong_one(name):
    assert peak_tflops(name, "bf16") is None
