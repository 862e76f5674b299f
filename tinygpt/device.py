"""Where to run: the device and the autocast context (bf16 on CUDA, float32 on CPU)."""

import ctypes
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


def flush_denormals(on=True):
    """Treat denormal floats as zero in this thread and in every thread of torch's OpenMP pool (x86, Linux).

    The attention weights of far keys (e^−87 … e^−103 in float32) are denormal, and the CPU flash
    kernel's backward slows down several-fold on them: alibi at context 1024 took 1.8× the baseline's
    step. torch.set_flush_denormal sets only the calling thread's MXCSR, so it is also run once in each
    thread of the OpenMP team torch computes with. Call it after torch.set_num_threads. Values below
    1.2e-38 become 0: they are weights and gradients far under float32's resolution of anything they are
    added to. on=False restores IEEE behaviour. Returns the number of threads set: 0 where the CPU cannot,
1 where the pool is out of reach.
    """
    if not torch.set_flush_denormal(on):
        return 0
    gomp = _torch_libgomp()
    if gomp is None:
        return 1
    done = []

    @ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    def each_thread(_):
        done.append(torch.set_flush_denormal(on))

    gomp.GOMP_parallel(each_thread, None, ctypes.c_uint(torch.get_num_threads()), ctypes.c_uint(0))
    return len(done)


def _torch_libgomp():
    """The GNU OpenMP runtime this process loaded for torch (found in /proc/self/maps), or None."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libgomp" in line}
        return ctypes.CDLL(sorted(paths)[0]) if paths else None
    except (OSError, IndexError, AttributeError):
        return None


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory():
    """Have glibc's malloc keep freed memory for reuse rather than hand it back to the kernel (Linux).

    torch's CPU allocator is plain malloc: by default each tensor above ~128 KiB is a fresh mmap, unmapped
    on free, and every page of it faults in again on first touch. A training step allocates the same
    shapes over and over: at the cpu preset that was 1,000-3,000 page faults per step. Blocks up to
    32 MiB (the most glibc allows) now come from the heap, which is neither trimmed nor shrunk, so the
    process keeps its peak resident set until it exits. Returns False where there is no glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in (
            (M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, (1 << 31) - 1), (M_TOP_PAD, 64 << 20)))
    except (OSError, AttributeError):
        return False
