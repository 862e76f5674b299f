"""Where to run: the device and the autocast context (bf16 on CUDA, float32 on CPU)."""

from contextlib import nullcontext

import torch


def resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:  # checked here, or torch.load(map_location=...) fails later and a good checkpoint looks corrupt
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device torch knows; use cpu, cuda, cuda:N or auto") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device=cpu (or auto)")
    if kind not in ("cpu", "cuda") and not getattr(getattr(torch.backends, kind, None), "is_available", bool)():
        raise ValueError(f"device={device!r} is not available here; use cpu, cuda or auto")
    return device


def autocast_context(device, dtype):
    if not device.startswith("cuda"):
        return nullcontext(), "float32"
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dtype == "float32":
        return nullcontext(), dtype
    return torch.autocast("cuda", dtype=getattr(torch, dtype)), dtype
