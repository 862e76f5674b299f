"""Training-step speed: ms per iteration, tokens/s and peak memory, variants side by side.

All variants are timed in one process, on the same fixed random batch, interleaved: each round times
the baseline, then each variant followed by the baseline again. A variant's ratio in a round is its
time over the mean of the two baseline timings around it (the speed of a shared machine drifts by
tens of percent within seconds); the ratio reported is the median over rounds, with its quartiles,
and ms/iter is the median of each variant's timings. Contention only ever slows a timing down, so the
ratio of the fastest rounds (`ratio_fastest`, in the JSON) is a second, less noisy estimate. The command's
`--processes N` runs all of this in N fresh processes, one after the other, and pools their rounds (`pool`).

Peak memory: on CUDA, the allocator's peak during the variant's construction and warm-up steps, less
what was allocated before (the earlier variants' models stay allocated; the H200 figures of 2026-12-04
still counted them). On CPU, a process's resident memory is shared by everything it ever allocated, so
each variant's peak is measured in a fresh subprocess: the high-water mark of its resident set (VmHWM)
over a few training steps, minus its resident set just before the first step (Python, torch, the model
and the batch). The subprocess has
the C allocator map every block of 64 KiB or more and return it on free, so this follows the live
tensors and repeats to the MiB.

    python -m tinygpt bench --preset cpu --variant all [--processes 3]
    python -m tinygpt bench --preset cpu --variant soft_window alibi --set block_size=1024 --rounds 3 --iters 2
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from .device import autocast_context, flush_denormals, keep_freed_memory, resolve_device
from .model import GPT
from .presets import make_config
from .step import GraphStep, cuda_graph, one_step, step_path
from .variants import VARIANTS


def _step_fn(cfg, device, ctx, path=None, capture=cuda_graph, batches=None):
    """A training step on one fixed random batch, on `path` (step.StepPath; default: the path training takes,
    step.step_path). A graphed step runs GraphStep.WARMUP eager steps, then captures and replays.
    `batches()`: a fresh (x, y) for every step instead (data loading included, as in training)."""
    path = path or step_path(cfg, device, dtype=autocast_context(device, cfg.dtype)[1])
    torch.manual_seed(0)
    model = GPT(cfg.model).to(device)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                     "cuda" if device.startswith("cuda") else "cpu")
    if path.compile:
        model = torch.compile(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(cfg.model.vocab_size, (cfg.batch_size, cfg.model.block_size), generator=g).to(device)
    y = torch.randint(cfg.model.vocab_size, (cfg.batch_size, cfg.model.block_size), generator=g).to(device)
    graph = GraphStep(model, opt, cfg, ctx, device, capture) if path.graphs else None

    def step():
        nonlocal x, y
        if graph is not None and graph.ready:
            loss = graph.step(x, y)
        else:
            with graph.warming() if graph is not None else contextlib.nullcontext():
                loss = one_step(model, opt, x, y, ctx, cfg.grad_clip)
        if batches is not None:
            x, y = batches()  # drawn while the step runs (asynchronous on CUDA), as train() does
        if graph is not None and not graph.ready:
            graph.eager_steps += 1
            graph.try_capture(x, y)
            if graph.failed:
                raise RuntimeError(f"CUDA graph capture failed: {graph.failed}")
        return loss

    return step


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(preset, seconds, step="eager", barrier=None, variant="baseline", threads=None, **overrides):
    """In this process: (warm-up seconds, steps, seconds) of the preset's training step on path `step`
    (a TINYGPT_STEP value). The warm-up (GraphStep.WARMUP + 1 steps) includes compiling and capturing, where
    the path does; `barrier` (a multiprocessing Barrier) starts several processes' timing together."""
    if threads:
        torch.set_num_threads(threads)
    cfg = make_config(preset, variant=variant, **overrides)
    device = resolve_device(cfg.device)
    ctx, dtype = autocast_context(device, cfg.dtype)
    fn = _step_fn(cfg, device, ctx, step_path(cfg, device, dtype=dtype, choice=step))
    t0 = time.perf_counter()
    for _ in range(GraphStep.WARMUP + 1):
        fn()
    _sync(device)
    warm = time.perf_counter() - t0
    if barrier is not None:
        barrier.wait()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        steps += 1
        if steps % 5 == 0:
            _sync(device)
    _sync(device)
    return warm, steps, time.perf_counter() - t0


def tokens_per_s_in_processes(n, preset, seconds, step="eager", pool=None):
    """[tokens/s of each of n fresh processes] timing the preset's step on path `step` over the same window.

    `pool(n)`: an executor of n processes (default: spawned ones; the book pins them to GPUs)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    cfg = make_config(preset)
    tokens = cfg.batch_size * cfg.model.block_size
    # on CPU the cores are shared out (two processes of two threads on two cores run many times slower)
    threads = None if resolve_device(cfg.device).startswith("cuda") else max(1, (os.cpu_count() or 1) // n)
    ctx = mp.get_context("spawn")  # fresh processes that have not touched CUDA
    with ctx.Manager() as manager, (pool or (lambda k: ProcessPoolExecutor(k, mp_context=ctx)))(n) as ex:
        barrier = manager.Barrier(n)
        res = [f.result() for f in [ex.submit(time_steps, preset, seconds, step, barrier, threads=threads)
                                    for _ in range(n)]]
    return [steps * tokens / t for _, steps, t in res]


def _rss_mb(field):
    """VmRSS or VmHWM (the resident high-water mark) of this process from /proc, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout this tinygpt is imported from


def _child_env(**extra):
    """This process's environment for a child Python that must import this same tinygpt."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
            **extra}


def _cpu_step_peak(preset, variant, overrides, steps=2):
    """In this (fresh) process: peak resident MiB above the resident set before the first step."""
    cfg = make_config(preset, variant=variant, device="cpu", **overrides)
    step = _step_fn(cfg, "cpu", autocast_context("cpu", cfg.dtype)[0])
    before = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set (Linux ≥ 4.0)
    for _ in range(steps):  # the first step allocates AdamW's state: kept, and counted
        step()
    return _rss_mb("VmHWM") - before


def cpu_peak_mb(preset, variant, overrides):
    """_cpu_step_peak in a subprocess (this process's memory would blur it); None where /proc cannot say."""
    code = ("import json, sys; from tinygpt.bench import _cpu_step_peak; "
            "a = json.loads(sys.argv[1]); print(json.dumps(_cpu_step_peak(*a)))")
    # glibc's malloc raises its mmap threshold after each large free, after which freed tensors stay
    # resident and the high-water mark depends on the order of frees (±5% between identical runs).
    # A fixed threshold maps every block ≥ 64 KiB and unmaps it on free: the peak follows the live
    # tensors, the same figure run after run.
    env = _child_env(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    try:
        out = subprocess.run([sys.executable, "-c", code, json.dumps([preset, variant, overrides])], env=env,
                             cwd=ROOT, capture_output=True, text=True, check=True)  # -c puts the cwd first
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.CalledProcessError, ValueError, IndexError, OSError):
        return None


def bench(preset="cpu", variants=("baseline",), iters=20, warmup=5, rounds=5, progress=True, cpu_memory=True,
          **overrides):
    """Rows of {variant, ms_per_iter, tokens_per_s, ratio, peak_mem_mb, mem_ratio}; ratios are to the baseline.

    The step is the one training takes (TINYGPT_STEP, else the config: step.step_path). cpu_memory=False skips
    the CPU peaks (a subprocess per variant)."""
    variants = list(VARIANTS) if variants in ("all", ["all"], ("all",)) else list(variants)
    if "baseline" not in variants:
        variants = ["baseline"] + variants
    cfgs = {v: make_config(preset, variant=v, **overrides) for v in variants}
    device = resolve_device(cfgs["baseline"].device)
    ctx, _ = autocast_context(device, cfgs["baseline"].dtype)
    if device == "cpu":
        flush_denormals()  # as train() does
        keep_freed_memory()
    steps, times, peaks = {}, {v: [] for v in variants}, {}
    cuda = device.startswith("cuda")
    for v in variants:
        if cuda:  # the variant's own peak: the earlier variants' models and optimizer states stay allocated
            _sync(device)
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        steps[v] = _step_fn(cfgs[v], device, ctx)
        for _ in range(warmup):
            steps[v]()
        _sync(device)
        peaks[v] = ((torch.cuda.max_memory_allocated() - before) / 2**20 if cuda
                    else cpu_peak_mb(preset, v, overrides) if cpu_memory else None)
    others = [v for v in variants if v != "baseline"]
    order = ["baseline"] + [x for v in others for x in (v, "baseline")]  # every variant between two baselines
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=rounds * len(order), desc="bench", unit="run")
    ratios = {v: [] for v in variants}
    for _ in range(rounds):
        took = []
        for v in order:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(iters):
                steps[v]()
            _sync(device)
            took.append((time.perf_counter() - t0) / iters)
            times[v].append(took[-1])
            if bar is not None:
                bar.update(1)
        # The machine's speed drifts by tens of percent over seconds (a shared 2-core VM): each ratio is
        # to the mean of the two baseline timings around it, and the median over rounds is reported.
        for i, v in enumerate(others):
            ratios[v].append(took[2 * i + 1] / ((took[2 * i] + took[2 * i + 2]) / 2))
        ratios["baseline"].append(1.0)
    if bar is not None:
        bar.close()
    tokens = {v: cfgs[v].batch_size * cfgs[v].model.block_size for v in variants}
    return [_row(v, [1000 * t for t in times[v]], ratios[v], min(times["baseline"]) * 1000, tokens[v], peaks[v],
                 peaks["baseline"], device=device, preset=preset, threads=torch.get_num_threads()) for v in variants]


def _row(variant, round_ms, round_ratios, fastest_baseline_ms, tokens, peak, baseline_peak, **where):
    """One variant's figures from its per-round timings (ms) and ratios."""
    t = statistics.median(round_ms)
    q = statistics.quantiles(round_ratios, n=4) if len(round_ratios) > 1 else [round_ratios[0]] * 3
    return {"variant": variant, "ms_per_iter": t, "ratio": statistics.median(round_ratios), "ratio_q1": q[0],
            "ratio_q3": q[2], "ratio_fastest": min(round_ms) / fastest_baseline_ms, "tokens_per_s": tokens / t * 1000,
            "peak_mem_mb": peak, "mem_ratio": peak / baseline_peak if peak is not None and baseline_peak else None,
            **where, "round_ms": round_ms, "round_ratios": round_ratios}


def pool(runs):
    """Rows of several bench processes as one: every round of every process, medians over all of them.

    On this shared VM one process's median ratio sat up to 0.1 away from the next one's, an offset that more
    rounds within a process do not average out; pooling the rounds of several processes does.
    """
    baselines = [r for rows in runs for r in rows if r["variant"] == "baseline"]
    fastest_baseline = min(t for b in baselines for t in b["round_ms"])
    out = []
    for i, r0 in enumerate(runs[0]):
        rs = [rows[i] for rows in runs]
        if any(r["variant"] != r0["variant"] for r in rs):
            raise ValueError("the bench processes timed different variants; pool only runs of the same command")
        where = {k: r0[k] for k in ("device", "preset", "threads")}
        out.append(_row(r0["variant"], [t for r in rs for t in r["round_ms"]],
                        [x for r in rs for x in r["round_ratios"]], fastest_baseline,
                        r0["tokens_per_s"] * r0["ms_per_iter"] / 1000, r0["peak_mem_mb"],
                        baselines[0]["peak_mem_mb"], **where, processes=len(runs)))
    return out


def bench_processes(argv, processes):
    """`tinygpt bench *argv` in `processes` fresh processes, one after the other; their rows pooled."""
    import tempfile
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(processes):
            print(f"bench: process {i + 1} of {processes}", file=sys.stderr, flush=True)
            path = os.path.join(tmp, f"{i}.json")
            done = subprocess.run([sys.executable, "-m", "tinygpt", "bench", *argv, "--json", path],
                                  env=_child_env(), stdout=subprocess.DEVNULL)
            if done.returncode:
                raise ChildProcessError(f"bench process {i + 1} of {processes} failed (exit {done.returncode}); "
                                        "its error is above")
            with open(path) as f:
                runs.append(json.load(f)["rows"])
    return pool(runs)


def format_rows(rows):
    mem = "peak CUDA MB" if rows[0]["device"].startswith("cuda") else "step peak RSS MB"

    def num(x, fmt):
        return "n/a" if x is None else format(x, fmt)

    lines = [f"| variant | ms/iter | × baseline | tokens/s | × quartiles | {mem} | mem × baseline |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        iqr = f"{r['ratio_q1']:.2f}–{r['ratio_q3']:.2f}" if "ratio_q1" in r else "n/a"
        lines.append(f"| {r['variant']} | {r['ms_per_iter']:.1f} | {r['ratio']:.2f} | "
                     f"{r['tokens_per_s']:,.0f} | {iqr} | {num(r['peak_mem_mb'], '.0f')} | "
                     f"{num(r.get('mem_ratio'), '.2f')} |")
    return "\n".join(lines)
