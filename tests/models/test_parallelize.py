"""Device-independent parts of the run-time modules: the peak-FLOPS table (`models.hardware.flops`), dtype choice on CPU
(`models.hardware.devices`), one-process helpers (`models.distributed.process_group`)."""

from __future__ import annotations

import pytest
import torch

from models.distributed.process_group import DistInfo, mean_over_ranks, min_over_ranks, rank0_value
from models.hardware.devices import resolve_dtype
from models.hardware.flops import PEAK_FLOPS, peak_flops, peak_flops_of


@pytest.mark.parametrize(
    ("name", "tflops"),
    [  # names as torch.cuda.get_device_name reports them; dense bf16 (fp16 on V100/T4) from NVIDIA's datasheets
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA H200", 989),
        ("NVIDIA A100-SXM4-40GB", 312),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA A100 80GB PCIe", 312),
        ("NVIDIA L4", 121),
        ("NVIDIA L40S", 362),
        ("NVIDIA A10G", 125),
        ("NVIDIA GeForce RTX 4090", 165),
        (" NVIDIA L4\n", 121),
    ],
)
def test_peak_flops_by_exact_device_name(name, tflops):
    assert peak_flops_of(name) == pytest.approx(tflops * 1e12)


@pytest.mark.parametrize("name", ["NVIDIA L4 Max", "L4", "NVIDIA GeForce RTX 5090", "NVIDIA A100", "", "AMD MI300X"])
def test_unknown_devices_get_no_mfu_rather_than_a_neighbours(name):
    assert peak_flops_of(name) is None


def test_no_key_is_a_prefix_trap_and_cpu_has_no_peak():
    # what a substring lookup got wrong: "NVIDIA L40S" contains "NVIDIA L4" but is priced 3x higher
    assert peak_flops_of("NVIDIA L40S") == pytest.approx(3 * PEAK_FLOPS["NVIDIA L4"], rel=0.01)
    assert peak_flops(torch.device("cpu"), torch.bfloat16) is None


def test_dtypes_on_cpu_and_one_process_agreement():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32 and resolve_dtype("float16", cpu) == torch.float16
    assert rank0_value(DistInfo(), 1.5, cpu) == 1.5 and min_over_ranks(DistInfo(), 3.0, cpu) == 3.0
    assert mean_over_ranks(DistInfo(), 2.5, cpu) == 2.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the rule on a machine without CUDA")
def test_one_device_rule_for_training_and_the_chat_engine(tmp_path):
    from models.hardware.devices import resolve_device
    from models.inference.generate import ChatEngine

    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError):
        resolve_device("cuda")
    with pytest.raises(ValueError):  # the same rule, before any file is read
        ChatEngine.from_checkpoint(tmp_path / "missing", device="cuda")
