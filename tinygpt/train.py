"""nanoGPT's training loop: AdamW, warmup + cosine decay, clipping, periodic eval, best-val checkpoint.

A run folder holds `config.json`, `history.json` (every evaluation), `ckpt.pt` (latest state, for
resuming bit for bit), `best.pt` (best-val weights) and, when finished, `metrics.json`. Every file
is written atomically, so a killed run leaves only whole files. Under `torchrun` it trains with
DDP, as nanoGPT does (each rank draws its own batches; rank 0 evaluates and writes).
"""

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import deferred_interrupt, read_checkpoint, read_json, save_checkpoint, write_json
from .data import load_dataset
from .device import autocast_context, flush_denormals, keep_freed_memory, resolve_device
from .model import GPT
from .presets import TrainConfig
from .step import GraphStep, step_path


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


def get_lr(it, cfg):
    """Linear warmup, cosine decay to min_lr, then min_lr (nanoGPT's schedule)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it > cfg.lr_decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, cfg.lr_decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.min_lr)


def _ddp_setup(device):
    """(rank, world_size, device) from torchrun's environment; (0, 1, device) otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, device
    from torch.distributed import init_process_group
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return rank, int(os.environ["WORLD_SIZE"]), device


# Tokens per no-grad forward pass of an evaluation, per device type. On CUDA a small batch is launch-bound (the
# gpu preset's 200 batches of 16,384 tokens, one pass each, were a third of a run's FLOPs and more of its time),
# so up to 32 batches go in one pass. On CPU stacked passes measured no faster (one thread; results/bench/cpu_speed.md),
# so a CPU pass holds one batch and takes the model's own loss, as before.
EVAL_TOKENS = {"cuda": 1 << 19}


def batch_losses(model, xs, ys, ctx, device):
    """[model(x, y)[1] for x, y in zip(xs, ys)], as a float32 CPU tensor, in a few stacked forward passes.

    Passes hold up to EVAL_TOKENS tokens, and each batch's loss is taken from its rows of the logits as the
    model takes it; that is bit for bit the per-batch loss on CPU (tests/test_eval.py), on CUDA equal to
    rounding (other kernels for other shapes).
    """
    B, T = xs[0].shape
    most = EVAL_TOKENS.get(torch.device(device).type, 0) // (B * T)
    # passes of one size (a divisor of the count): a compiled kernel (the hard window's FlexAttention) then
    # compiles once for them, not again for a shorter last pass
    per = max(d for d in range(1, max(1, min(most, len(xs))) + 1) if len(xs) % d == 0)
    losses = []
    for i in range(0, len(xs), per):
        x, y = torch.cat(xs[i:i + per]).to(device), torch.cat(ys[i:i + per]).to(device)
        with ctx:
            if per == 1:  # one batch a pass: the model's own loss, as nanoGPT's estimate_loss takes it
                losses.append(model(x, y)[1])
                continue
            logits = model(x)[0]
        losses += [F.cross_entropy(logits[j:j + B].reshape(-1, logits.size(-1)).float(), y[j:j + B].reshape(-1),
                                   ignore_index=-1) for j in range(0, len(x), B)]
    return torch.stack(losses).float().cpu()


@torch.no_grad()
def estimate_loss(model, data, cfg, iter_num, device, ctx):
    """Mean loss over eval_iters batches per split; its own generator, so training's is untouched."""
    model.eval()
    out = {}
    for split in ("train", "val"):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + iter_num + (split == "val"))
        batches = [data.get_batch(split, cfg.batch_size, cfg.model.block_size, gen, "cpu",
                                  fraction=cfg.data_fraction if split == "train" else 1.0)
                   for _ in range(cfg.eval_iters)]
        out[split] = batch_losses(model, *zip(*batches), ctx, device).mean().item()
    model.train()
    return out


@torch.no_grad()
def full_val_loss(model, data, block_size, device="cpu", batch=64, ctx=None):
    """Mean loss over the whole validation split in non-overlapping windows: no sampling noise.

    The periodic evaluation (eval_iters random batches) picks the best checkpoint as nanoGPT does;
    its estimate carries sampling noise of the order of 0.01–0.02 nats, which this removes.
    """
    model.eval()
    val = torch.from_numpy(data.tokens("val").astype("int64"))
    n = (len(val) - 1) // block_size
    x = val[: n * block_size].view(n, block_size)
    y = val[1: n * block_size + 1].view(n, block_size)
    starts = range(0, n, batch)
    losses = batch_losses(model, [x[i:i + batch] for i in starts], [y[i:i + batch] for i in starts],
                          ctx or nullcontext(), device)
    total = 0.0
    for i, loss in zip(starts, losses.tolist()):  # in double, as before: the same sum, in the same order
        total += loss * len(x[i:i + batch])
    return total / n


def _rng_state(batch_state, device):
    state = {"torch": torch.get_rng_state(), "batches": batch_state}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state, gen, device):
    torch.set_rng_state(state["torch"])
    gen.set_state(state["batches"])
    if device.startswith("cuda") and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _progress(total, initial, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="train", unit="it", dynamic_ncols=True)


@dataclasses.dataclass
class _Session:
    """Everything one training session holds: the model, its optimizer, the data and the counters."""

    cfg: TrainConfig
    out_dir: Path
    device: str
    rank: int
    world: int
    data: object
    ctx: object
    dtype: str
    raw_model: GPT
    optimizer: object
    scaler: object
    gen: torch.Generator
    iter_num: int = 0
    best_val: float = float("inf")
    history: list = dataclasses.field(default_factory=list)
    elapsed0: float = 0.0
    pending_state: object = None  # the batch generator's state before the prefetched batch was drawn

    @property
    def master(self):
        return self.rank == 0

    @property
    def ckpt_path(self):
        return self.out_dir / "ckpt.pt"

    @property
    def tokens_per_iter(self):
        c = self.cfg
        return c.batch_size * c.model.block_size * c.gradient_accumulation_steps * self.world

    def next_batch(self):  # remembers the generator state before the draw: a resumed run redraws this batch
        self.pending_state = self.gen.get_state()
        c = self.cfg
        return self.data.get_batch("train", c.batch_size, c.model.block_size, self.gen, self.device,
                                   fraction=c.data_fraction)


def _setup(cfg, out_dir, resume, log):
    """Model, optimizer, data and RNGs from cfg; with resume, every state from out_dir/ckpt.pt."""
    ckpt_path = out_dir / "ckpt.pt"
    ckpt = read_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    device = resolve_device(cfg.device)
    rank, world, device = _ddp_setup(device)
    data = load_dataset(cfg.dataset)
    saved_threads = (ckpt or {}).get("config", {}).get("threads")  # 0 (auto) resumes with the run's own count
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=data.vocab_size),
                              threads=cfg.threads or saved_threads or torch.get_num_threads())
    data.check_block_size(cfg.model.block_size, fraction=cfg.data_fraction)
    ctx, dtype = autocast_context(device, cfg.dtype)
    torch.set_num_threads(cfg.threads)
    if device == "cpu":
        flush_denormals()  # far keys' weights are denormal: the flash backward slows down several-fold on them
        keep_freed_memory()  # no page faults on the step's every fresh tensor (cpu preset: the step 0.93×)

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = GPT(cfg.model).to(device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                           "cuda" if device.startswith("cuda") else "cpu")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == "float16")
    gen = torch.Generator().manual_seed(cfg.seed + rank)  # batch draws (dropout uses the global RNG)
    torch.manual_seed(cfg.seed + rank)
    s = _Session(cfg, out_dir, device, rank, world, data, ctx, dtype, model, optimizer, scaler, gen)
    if ckpt is not None:
        _resume(s, ckpt, log)
    elif s.master:
        write_json(out_dir / "config.json", cfg.to_dict())
    return s


def _resume(s, ckpt, log):
    saved, cfg = dict(ckpt["config"]), s.cfg
    saved.setdefault("threads", cfg.threads)  # checkpoints from before the field: their count was not recorded
    saved = TrainConfig.from_dict(saved)
    if saved != cfg:
        old, new = saved.to_dict(), cfg.to_dict()
        old, new = {**old.pop("model"), **old}, {**new.pop("model"), **new}  # name model fields, not "model"
        diff = {k: (v, new.get(k)) for k, v in old.items() if new.get(k) != v}
        raise ValueError(f"{s.ckpt_path} was trained with another config ({diff}); "
                         "use a new --out folder or the same settings")
    s.raw_model.load_state_dict(ckpt["model"])
    s.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        s.scaler.load_state_dict(ckpt["scaler"])
    s.iter_num, s.best_val, s.history = ckpt["iter_num"], ckpt["best_val_loss"], ckpt["history"]
    s.elapsed0 = s.history[-1]["elapsed_s"] if s.history else 0.0
    _set_rng_state(ckpt["rng"][0], s.gen, s.device)
    if s.rank > 0:  # only rank 0's states are saved: the others draw fresh, distinct streams
        s.gen.manual_seed(cfg.seed + s.rank + 7919 * s.iter_num)
        torch.manual_seed(cfg.seed + s.rank + 7919 * s.iter_num)
    log(f"resumed {s.out_dir} at iter {s.iter_num}")
    if s.master:
        _restore_json(s, log)


def _restore_json(s, log):
    """config.json and history.json as the checkpoint describes them: a file that is missing, corrupt or
    out of step (a kill between the checkpoint and its history) is rewritten, so that a resumed run never
    reports success over a broken file."""
    cfg = s.cfg.to_dict()
    want = {"config.json": cfg, "history.json": {"evals": s.history, "best_val_loss": s.best_val, "config": cfg}}
    for name, content in want.items():
        try:
            ok = read_json(s.out_dir / name) == content
            why = "out of step with the checkpoint"
        except (OSError, ValueError) as e:
            ok, why = False, "missing" if isinstance(e, FileNotFoundError) else "corrupt"
        if not ok:
            write_json(s.out_dir / name, content)
            log(f"rewrote {s.out_dir / name} from the checkpoint (it was {why})")


def _evaluate_and_checkpoint(s, lr, train_seconds, steps, elapsed):
    """Periodic evaluation: history, best.pt when the estimate improves, ckpt.pt always; returns val loss."""
    losses = estimate_loss(s.raw_model, s.data, s.cfg, s.iter_num, s.device, s.ctx)
    s.history.append({"iter": s.iter_num, "train_loss": losses["train"], "val_loss": losses["val"], "lr": lr,
                      "elapsed_s": round(elapsed, 3),
                      "tokens_per_s": round(steps * s.tokens_per_iter / max(train_seconds, 1e-9), 1) if steps
                      else None})
    if not all(math.isfinite(v) for v in losses.values()):
        raise TrainingDiverged(f"eval loss {losses} at iter {s.iter_num} is not finite; the last good checkpoint "
                               f"{s.ckpt_path} is intact. Lower learning_rate or check the data.")
    cfg, common = s.cfg, {"model_args": vars(s.cfg.model), "config": s.cfg.to_dict(), "vocab": s.data.itos}
    with deferred_interrupt():  # Ctrl-C waits for the three files, so they always describe the same iteration
        if losses["val"] < s.best_val:
            s.best_val = losses["val"]
            save_checkpoint(s.out_dir / "best.pt", {"model": s.raw_model.state_dict(), "iter_num": s.iter_num,
                                                    "best_val_loss": s.best_val, **common})
        save_checkpoint(s.ckpt_path, {"model": s.raw_model.state_dict(), "optimizer": s.optimizer.state_dict(),
                                      "iter_num": s.iter_num, "best_val_loss": s.best_val, **common,
                                      "history": s.history, "rng": [_rng_state(s.pending_state, s.device)],  # rank 0's
                                      "scaler": s.scaler.state_dict()})
        write_json(s.out_dir / "history.json",
                   {"evals": s.history, "best_val_loss": s.best_val, "config": cfg.to_dict()})
    return losses["val"]


def _step(s, model, x, y, check, graph=None):
    """One optimizer step on (x, y), prefetching the next batch; returns (next x, next y, loss or None).

    With a GraphStep that has captured the step, the step is its replay; until then (and where the capture
    failed) the eager step below, which the graph records.
    """
    cfg, lossf = s.cfg, None
    if graph is not None and graph.ready:
        loss = graph.step(x, y)
        x, y = s.next_batch()
        return x, y, _check_loss(s, loss.item()) if check else None
    for micro in range(cfg.gradient_accumulation_steps):
        if s.world > 1:
            model.require_backward_grad_sync = micro == cfg.gradient_accumulation_steps - 1
        with s.ctx:
            loss = model(x, y)[1] / cfg.gradient_accumulation_steps
        x, y = s.next_batch()  # drawn while the backward pass runs (async on CUDA)
        s.scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        s.scaler.unscale_(s.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if check:
        lossf = _check_loss(s, loss.item() * cfg.gradient_accumulation_steps)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.optimizer.zero_grad(set_to_none=True)
    if graph is not None:
        graph.eager_steps += 1
    return x, y, lossf


def _check_loss(s, lossf):
    if not math.isfinite(lossf):
        raise TrainingDiverged(f"training loss became {lossf} at iter {s.iter_num}; the last good checkpoint "
                               f"{s.ckpt_path} is intact. Lower learning_rate or check the data.")
    return lossf


def _finish(s, log, step):
    """metrics.json: the periodic estimate's best, and the whole-split loss of the best and final weights.

    `step`: the path the steps took (step.py), e.g. "compile+graphs"."""
    cfg, device = s.cfg, s.device
    best = min(s.history, key=lambda h: h["val_loss"])
    rates = [h["tokens_per_s"] for h in s.history if h["tokens_per_s"]]
    best_ckpt = read_checkpoint(s.out_dir / "best.pt", map_location=device)
    # the best checkpoint (picked by the periodic estimate) and the final one, on the whole split
    final_full = full_val_loss(s.raw_model, s.data, cfg.model.block_size, device, ctx=s.ctx)
    if best_ckpt["iter_num"] == s.iter_num:  # the best is the final model: the same weights, the same number
        full = final_full
    else:
        best_model = GPT(cfg.model).to(device)
        best_model.load_state_dict(best_ckpt["model"])
        full = full_val_loss(best_model, s.data, cfg.model.block_size, device, ctx=s.ctx)
    write_json(s.out_dir / "metrics.json", {
        "best_val_loss": best["val_loss"], "best_iter": best["iter"], "val_loss_full": full,
        "final_val_loss_full": final_full,
        "final_val_loss": s.history[-1]["val_loss"],
        "final_train_loss": s.history[-1]["train_loss"], "iters": s.iter_num, "params": s.raw_model.get_num_params(),
        "elapsed_s": s.history[-1]["elapsed_s"], "tokens_per_s": sorted(rates)[len(rates) // 2] if rates else None,
        "device": device, "dtype": s.dtype, "world_size": s.world, "torch": torch.__version__,
        "step_path": step})
    log(f"best val loss {best['val_loss']:.4f} at iter {best['iter']} ({s.out_dir})")


def train(cfg: TrainConfig, out_dir, resume=False, progress=True, stop_at=None, log=print):
    """Train cfg into out_dir and return the history dict.

    resume: continue from out_dir/ckpt.pt; the result equals an uninterrupted run.
    stop_at: return after this many iterations, as if the run had been killed (tests, time boxes).
    The run's thread count (cfg.threads) holds while it trains; the caller's comes back afterwards.
    """
    threads = torch.get_num_threads()
    try:
        return _train(cfg, Path(out_dir), resume, progress, stop_at, log)
    finally:
        torch.set_num_threads(threads)


def _train(cfg, out_dir, resume, progress, stop_at, log):
    s = _setup(cfg, out_dir, resume, log)
    cfg, model = s.cfg, s.raw_model
    path = step_path(cfg, s.device, s.world, s.dtype)  # TINYGPT_STEP, else the config (step.py)
    if path.note:
        log(path.note)
    if path.compile:
        model = torch.compile(model)
    graph = GraphStep(model, s.optimizer, cfg, s.ctx, s.device) if path.graphs else None
    if s.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, device_ids=[int(s.device.split(":")[1])] if s.device.startswith("cuda") else None)

    bar = _progress(cfg.max_iters, s.iter_num, progress and s.master)
    check_every = 10 if s.device.startswith("cuda") else 1  # .item() syncs the GPU
    t_session = time.perf_counter()
    t_train, it_mark, last_val, skip_eval = 0.0, s.iter_num, None, resume and bool(s.history)
    finished = False
    x, y = s.next_batch()
    while True:
        lr = get_lr(s.iter_num, cfg)
        if graph is not None:
            graph.set_lr(lr)
        else:
            for group in s.optimizer.param_groups:
                group["lr"] = lr
        if (s.iter_num % cfg.eval_interval == 0 or s.iter_num == cfg.max_iters) and not skip_eval:
            if s.master:
                elapsed = s.elapsed0 + time.perf_counter() - t_session
                last_val = _evaluate_and_checkpoint(s, lr, t_train, s.iter_num - it_mark, elapsed)
            t_train, it_mark = 0.0, s.iter_num
        skip_eval = False
        if s.iter_num >= cfg.max_iters:
            finished = True
            break
        t0 = time.perf_counter()
        if graph is not None:
            graph.try_capture(x, y, log)
        with graph.warming() if graph is not None else nullcontext():
            x, y, lossf = _step(s, model, x, y, check=s.iter_num % check_every == 0, graph=graph)
        s.iter_num += 1
        t_train += time.perf_counter() - t0
        if bar is not None:
            bar.update(1)
            if lossf is not None:
                bar.set_postfix(loss=f"{lossf:.4f}", val=f"{last_val:.4f}" if last_val else "-",
                                tok_s=f"{(s.iter_num - it_mark) * s.tokens_per_iter / max(t_train, 1e-9):,.0f}")
        if stop_at is not None and s.iter_num >= stop_at:
            break
    if bar is not None:
        bar.close()
    if finished and s.master:
        _finish(s, log, path.name if graph is None or not graph.failed else path.name + " (capture failed: eager)")
    if s.world > 1:
        from torch.distributed import destroy_process_group
        destroy_process_group()
    if not finished:
        return {"evals": s.history, "best_val_loss": s.best_val, "stopped_at": s.iter_num}
    return {"evals": s.history, "best_val_loss": s.best_val, "config": cfg.to_dict()}


def load_history(run_dir):
    return read_json(Path(run_dir) / "history.json")
