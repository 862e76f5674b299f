"""Training-step speed: ms per iteration, tokens/s and peak memory, variants side by side.

All variants are timed in one process, interleaved round by round (so drift in the machine's
speed hits them alike), on the same fixed random batch; each figure is the median of the rounds.
"""

import resource
import statistics
import time

import torch

from .device import autocast_context, resolve_device
from .model import GPT
from .presets import make_config
from .variants import VARIANTS


def _step_fn(cfg, device, ctx):
    torch.manual_seed(0)
    model = GPT(cfg.model).to(device)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                     "cuda" if device.startswith("cuda") else "cpu")
    if cfg.compile:
        model = torch.compile(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(cfg.model.vocab_size, (cfg.batch_size, cfg.model.block_size), generator=g).to(device)
    y = torch.randint(cfg.model.vocab_size, (cfg.batch_size, cfg.model.block_size), generator=g).to(device)

    def step():
        with ctx:
            loss = model(x, y)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(preset="cpu", variants=("baseline",), iters=20, warmup=5, rounds=5, progress=True, **overrides):
    """Rows of {variant, ms_per_iter, tokens_per_s, ratio, peak_mem_mb}; ratio is to the baseline."""
    variants = list(VARIANTS) if variants in ("all", ["all"], ("all",)) else list(variants)
    if "baseline" not in variants:
        variants = ["baseline"] + variants
    cfgs = {v: make_config(preset, variant=v, **overrides) for v in variants}
    device = resolve_device(cfgs["baseline"].device)
    ctx, _ = autocast_context(device, cfgs["baseline"].dtype)
    steps, times, peaks = {}, {v: [] for v in variants}, {}
    for v in variants:
        steps[v] = _step_fn(cfgs[v], device, ctx)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            steps[v]()
        _sync(device)
        peaks[v] = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    total = rounds * len(variants)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="bench", unit="run")
    for _ in range(rounds):
        for v in variants:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(iters):
                steps[v]()
            _sync(device)
            times[v].append((time.perf_counter() - t0) / iters)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    base = statistics.median(times["baseline"])
    rows = []
    for v in variants:
        cfg, t = cfgs[v], statistics.median(times[v])
        rows.append({"variant": v, "ms_per_iter": 1000 * t, "ratio": t / base,
                     "tokens_per_s": cfg.batch_size * cfg.model.block_size / t, "peak_mem_mb": peaks[v],
                     "device": device, "preset": preset, "threads": torch.get_num_threads()})
    return rows


def format_rows(rows):
    mem = "peak CUDA MB" if rows[0]["device"].startswith("cuda") else "process max RSS MB"
    lines = [f"| variant | ms/iter | × baseline | tokens/s | {mem} |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['ms_per_iter']:.1f} | {r['ratio']:.2f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['peak_mem_mb']:.0f} |")
    return "\n".join(lines)
