"""Where to run: the device and the autocast context (bf16 on CUDA, float32 on CPU)."""

from contextlib import nullcontext

import torch


def resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device=cpu (or auto)")
    return device


def autocast_context(device, dtype):
    if not device.startswith("cuda"):
        return nullcontext(), "float32"
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dtype == "float32":
        return nullcontext(), dtype
    return torch.autocast("cuda", dtype=getattr(torch, dtype)), dtype
