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
from pathlib import Path

import torch

from .checkpoint import read_checkpoint, read_json, save_checkpoint, write_json
from .data import load_dataset
from .device import autocast_context, resolve_device
from .model import GPT
from .presets import TrainConfig


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


@torch.no_grad()
def estimate_loss(model, data, cfg, iter_num, device, ctx):
    """Mean loss over eval_iters batches per split; its own generator, so training's is untouched."""
    model.eval()
    out = {}
    for split in ("train", "val"):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + iter_num + (split == "val"))
        losses = torch.zeros(cfg.eval_iters)
        for k in range(cfg.eval_iters):
            x, y = data.get_batch(split, cfg.batch_size, cfg.model.block_size, gen, device,
                                  fraction=cfg.data_fraction if split == "train" else 1.0)
            with ctx:
                losses[k] = model(x, y)[1].item()
        out[split] = losses.mean().item()
    model.train()
    return out


@torch.no_grad()
def full_val_loss(model, data, block_size, device="cpu", batch=64):
    """Mean loss over the whole validation split in non-overlapping windows: no sampling noise.

    The periodic evaluation (eval_iters random batches) picks the best checkpoint as nanoGPT does;
    its estimate carries sampling noise of the order of 0.01–0.02 nats, which this removes.
    """
    model.eval()
    val = torch.from_numpy(data.tokens("val").astype("int64"))
    n = (len(val) - 1) // block_size
    x = val[: n * block_size].view(n, block_size)
    y = val[1: n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, batch):
        total += model(x[i:i + batch].to(device), y[i:i + batch].to(device))[1].item() * len(x[i:i + batch])
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


def train(cfg: TrainConfig, out_dir, resume=False, progress=True, stop_at=None, log=print):
    """Train cfg into out_dir and return the history dict.

    resume: continue from out_dir/ckpt.pt; the result equals an uninterrupted run.
    stop_at: return after this many iterations, as if the run had been killed (tests, time boxes).
    """
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    rank, world, device = _ddp_setup(device)
    master = rank == 0
    data = load_dataset(cfg.dataset)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=data.vocab_size))
    data.check_block_size(cfg.model.block_size, fraction=cfg.data_fraction)
    ctx, dtype = autocast_context(device, cfg.dtype)

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = GPT(cfg.model).to(device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                           "cuda" if device.startswith("cuda") else "cpu")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == "float16")
    gen = torch.Generator().manual_seed(cfg.seed + rank)  # batch draws (dropout uses the global RNG)
    torch.manual_seed(cfg.seed + rank)
    iter_num, best_val, history, elapsed0 = 0, float("inf"), [], 0.0
    ckpt_path = out_dir / "ckpt.pt"
    if resume and ckpt_path.exists():
        ckpt = read_checkpoint(ckpt_path, map_location=device)
        saved = TrainConfig.from_dict(ckpt["config"])
        if saved != cfg:
            old, new = saved.to_dict(), cfg.to_dict()
            old, new = {**old.pop("model"), **old}, {**new.pop("model"), **new}  # name model fields, not "model"
            diff = {k: (v, new.get(k)) for k, v in old.items() if new.get(k) != v}
            raise ValueError(f"{ckpt_path} was trained with another config ({diff}); "
                             "use a new --out folder or the same settings")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        iter_num, best_val, history = ckpt["iter_num"], ckpt["best_val_loss"], ckpt["history"]
        elapsed0 = history[-1]["elapsed_s"] if history else 0.0
        _set_rng_state(ckpt["rng"][0], gen, device)
        if rank > 0:  # only rank 0's states are saved: the others draw fresh, distinct streams
            gen.manual_seed(cfg.seed + rank + 7919 * iter_num)
            torch.manual_seed(cfg.seed + rank + 7919 * iter_num)
        log(f"resumed {out_dir} at iter {iter_num}")
    elif master:
        write_json(out_dir / "config.json", cfg.to_dict())

    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, device_ids=[int(device.split(":")[1])] if device.startswith("cuda") else None)
    tokens_per_iter = cfg.batch_size * cfg.model.block_size * cfg.gradient_accumulation_steps * world
    n_params = raw_model.get_num_params()

    def next_batch():  # remembers the generator state before the draw: a resumed run redraws this batch
        nonlocal pending_state
        pending_state = gen.get_state()
        return data.get_batch("train", cfg.batch_size, cfg.model.block_size, gen, device, fraction=cfg.data_fraction)

    def record(losses, lr, train_seconds, steps):
        nonlocal best_val
        elapsed = elapsed0 + time.perf_counter() - t_session
        history.append({"iter": iter_num, "train_loss": losses["train"], "val_loss": losses["val"], "lr": lr,
                        "elapsed_s": round(elapsed, 3),
                        "tokens_per_s": round(steps * tokens_per_iter / max(train_seconds, 1e-9), 1) if steps
                        else None})
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrainingDiverged(f"eval loss {losses} at iter {iter_num} is not finite; the last good checkpoint "
                                   f"{ckpt_path} is intact. Lower learning_rate or check the data.")
        if losses["val"] < best_val:
            best_val = losses["val"]
            save_checkpoint(out_dir / "best.pt", {"model": raw_model.state_dict(), "model_args": vars(cfg.model),
                                                  "iter_num": iter_num, "best_val_loss": best_val,
                                                  "config": cfg.to_dict(), "vocab": data.itos})
        rng = [_rng_state(pending_state, device)]  # rank 0's
        save_checkpoint(ckpt_path, {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "model_args": vars(cfg.model), "iter_num": iter_num, "best_val_loss": best_val,
                                    "config": cfg.to_dict(), "vocab": data.itos, "history": history, "rng": rng,
                                    "scaler": scaler.state_dict()})
        write_json(out_dir / "history.json", {"evals": history, "best_val_loss": best_val, "config": cfg.to_dict()})

    bar = _progress(cfg.max_iters, iter_num, progress and master)
    check_every = 10 if device.startswith("cuda") else 1  # .item() syncs the GPU
    t_session = time.perf_counter()
    t_train, it_mark, last_val, skip_eval = 0.0, iter_num, None, resume and bool(history)
    pending_state = None
    x, y = next_batch()
    while True:
        lr = get_lr(iter_num, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if (iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters) and not skip_eval:
            if master:
                losses = estimate_loss(raw_model, data, cfg, iter_num, device, ctx)
                record(losses, lr, t_train, iter_num - it_mark)
                last_val = losses["val"]
            t_train, it_mark = 0.0, iter_num
        skip_eval = False
        if iter_num >= cfg.max_iters:
            break
        t0 = time.perf_counter()
        for micro in range(cfg.gradient_accumulation_steps):
            if world > 1:
                model.require_backward_grad_sync = micro == cfg.gradient_accumulation_steps - 1
            with ctx:
                loss = model(x, y)[1] / cfg.gradient_accumulation_steps
            # draw the next batch while the backward pass runs (async on CUDA)
            x, y = next_batch()
            scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if iter_num % check_every == 0:
            lossf = loss.item() * cfg.gradient_accumulation_steps
            if not math.isfinite(lossf):
                raise TrainingDiverged(f"training loss became {lossf} at iter {iter_num}; the last good checkpoint "
                                       f"{ckpt_path} is intact. Lower learning_rate or check the data.")
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        iter_num += 1
        t_train += time.perf_counter() - t0
        if bar is not None:
            bar.update(1)
            if iter_num % check_every == 0:
                bar.set_postfix(loss=f"{lossf:.4f}", val=f"{last_val:.4f}" if last_val else "-",
                                tok_s=f"{(iter_num - it_mark) * tokens_per_iter / max(t_train, 1e-9):,.0f}")
        if stop_at is not None and iter_num >= stop_at:
            if bar is not None:
                bar.close()
            if world > 1:
                from torch.distributed import destroy_process_group
                destroy_process_group()
            return {"evals": history, "best_val_loss": best_val, "stopped_at": iter_num}
    if bar is not None:
        bar.close()
    result = {"evals": history, "best_val_loss": best_val, "config": cfg.to_dict()}
    if master:
        best = min(history, key=lambda h: h["val_loss"])
        rates = [h["tokens_per_s"] for h in history if h["tokens_per_s"]]
        best_model = GPT(cfg.model).to(device)
        best_model.load_state_dict(read_checkpoint(out_dir / "best.pt", map_location=device)["model"])
        with ctx:  # the best checkpoint (picked by the periodic estimate) and the final one, on the whole split
            full = full_val_loss(best_model, data, cfg.model.block_size, device)
            final_full = full_val_loss(raw_model, data, cfg.model.block_size, device)
        write_json(out_dir / "metrics.json", {
            "best_val_loss": best["val_loss"], "best_iter": best["iter"], "val_loss_full": full,
            "final_val_loss_full": final_full,
            "final_val_loss": history[-1]["val_loss"],
            "final_train_loss": history[-1]["train_loss"], "iters": iter_num, "params": n_params,
            "elapsed_s": history[-1]["elapsed_s"], "tokens_per_s": sorted(rates)[len(rates) // 2] if rates else None,
            "device": device, "dtype": dtype, "world_size": world, "torch": torch.__version__})
        log(f"best val loss {best['val_loss']:.4f} at iter {best['iter']} ({out_dir})")
    if world > 1:
        from torch.distributed import destroy_process_group
        destroy_process_group()
    return result


def load_history(run_dir):
    return read_json(Path(run_dir) / "history.json")
