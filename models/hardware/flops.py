"""Peak FLOP/s of an accelerator, the denominator of the MFU estimate the training loop logs (`train/mfu`)."""

from __future__ import annotations

import torch


# Dense 16-bit tensor-core peak FLOP/s (bf16, or fp16 where a GPU has no bf16; fp32 accumulation), keyed by the exact
# name `torch.cuda.get_device_name` reports, from NVIDIA's datasheets (the "with sparsity" figures halved). Exact
# keys, never substrings: "NVIDIA L40S" must not be priced as "NVIDIA L4" (MFU 3x too high). A GPU missing here gets
# no MFU rather than a wrong one; add its exact name.
PEAK_FLOPS: dict[str, float] = {
    "NVIDIA B200": 2250e12,
    "NVIDIA H200": 989e12,  # H200 SXM
    "NVIDIA H200 NVL": 835e12,
    "NVIDIA H100 80GB HBM3": 989e12,  # H100 SXM
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H100 NVL": 835e12,
    "NVIDIA H800": 989e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA L40S": 362e12,
    "NVIDIA L40": 181e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A10": 125e12,
    "NVIDIA A10G": 125e12,  # no NVIDIA datasheet; AWS quotes the A10's figure
    "NVIDIA GeForce RTX 4090": 165e12,  # fp32 accumulation (330 with fp16 accumulation)
    "NVIDIA GeForce RTX 3090": 71e12,
    "Tesla V100-SXM2-16GB": 125e12,  # fp16 (no bf16)
    "Tesla V100-SXM2-32GB": 125e12,
    "Tesla T4": 65e12,  # fp16 (no bf16)
}


def peak_flops_of(device_name: str) -> float | None:
    """Peak 16-bit FLOP/s of the GPU named exactly `device_name`; None when it is not in `PEAK_FLOPS`."""
    return PEAK_FLOPS.get(device_name.strip())


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device for the MFU estimate; None when unknown (CPU, fp32, a GPU missing from the table)."""
    if device.type != "cuda" or dtype == torch.float32:
        return None
    return peak_flops_of(torch.cuda.get_device_name(device))
