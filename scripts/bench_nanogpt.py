"""Training step: tinygpt against nanoGPT's own model.py and train.py step, side by side in one process.

nanoGPT (karpathy/nanoGPT, MIT) cannot be fetched on these machines, so its model and the body of
its training loop are transcribed below, line for line where it matters for speed: the same
modules, SDPA flash attention with is_causal, exact GELU, weight tying, AdamW with nanoGPT's
decay groups (non-fused on CPU, as its configure_optimizers chooses), a disabled GradScaler,
clipping at 1.0, `loss.item()` every iteration (log_interval=1 in its documented CPU command) and
its get_batch, which opens the memmap anew for every batch.

Both steps draw their batches from the same prepared train.bin and run at the same preset, are
warmed up, then timed in interleaved rounds; each figure is the median over rounds.

    python scripts/bench_nanogpt.py --preset cpu [--rounds 7] [--iters 20] [--json results/bench/nanogpt_cpu.json]

`--whole` times whole commands instead, each in a fresh process: nanoGPT's train.py (the loop
below, `nanogpt_train`: its imports, memmap batches, an evaluation every eval_interval with a
checkpoint whenever val improves, a log line per iteration) against `python -m tinygpt train`
at the same settings, in interleaved pairs whose order alternates; the medians over pairs:

    python scripts/bench_nanogpt.py --whole --iters 2000 --pairs 3 [--json results/bench/nanogpt_whole_cpu.json]
"""

import argparse
import contextlib
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
# tinygpt is imported where it is used: the timed nanoGPT process must not pay for its imports

# ----------------------------------------------------------------------------- nanoGPT's model.py

class NanoLayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class NanoAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.attn_dropout = nn.Dropout(c.dropout)
        self.resid_dropout = nn.Dropout(c.dropout)
        self.n_head, self.n_embd, self.dropout = c.n_head, c.n_embd, c.dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                           dropout_p=self.dropout if self.training else 0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class NanoMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class NanoBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = NanoLayerNorm(c.n_embd, bias=c.bias)
        self.attn = NanoAttention(c)
        self.ln_2 = NanoLayerNorm(c.n_embd, bias=c.bias)
        self.mlp = NanoMLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd), wpe=nn.Embedding(c.block_size, c.n_embd),
            drop=nn.Dropout(c.dropout), h=nn.ModuleList([NanoBlock(c) for _ in range(c.n_layer)]),
            ln_f=NanoLayerNorm(c.n_embd, bias=c.bias)))
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        params = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
        fused = "fused" in inspect.signature(torch.optim.AdamW).parameters and device_type == "cuda"
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **(dict(fused=True) if fused else {}))


# ----------------------------------------------------------------------------- the two training steps

def nanogpt_step_fn(cfg, data_dir, device="cpu", compile=False, log_interval=1):
    """nanoGPT train.py's loop body (gradient_accumulation_steps=1): on CPU float32; on CUDA as its train.py
    sets up a GPU: bf16 autocast (float16 with a GradScaler where bf16 is missing), TF32 matmuls, fused AdamW,
    pinned non-blocking batch copies, `loss.item()` every log_interval steps, torch.compile if asked."""
    cuda = device.startswith("cuda")
    torch.manual_seed(1337)
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = NanoGPT(cfg.model).to(device)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and dtype == torch.float16)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                     "cuda" if cuda else "cpu")
    if compile:
        model = torch.compile(model)
    ctx = torch.amp.autocast(device_type="cuda", dtype=dtype) if cuda else contextlib.nullcontext()
    B, T = cfg.batch_size, cfg.model.block_size

    def get_batch():
        data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy((data[i:i + T]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + T]).astype(np.int64)) for i in ix])
        if cuda:
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x, y

    X, Y = get_batch()
    it = 0

    def step():
        nonlocal X, Y, it
        with ctx:
            _, loss = model(X, Y)
        X, Y = get_batch()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        it += 1
        return loss.item() if it % log_interval == 0 else None

    return step


def tinygpt_step_fn(cfg, data):
    """tinygpt.train's loop body at the same settings."""
    from tinygpt.model import GPT as TinyGPT
    torch.manual_seed(1337)
    model = TinyGPT(cfg.model)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), "cpu")
    gen = torch.Generator().manual_seed(1337)
    B, T = cfg.batch_size, cfg.model.block_size
    X, Y = data.get_batch("train", B, T, gen)

    def step():
        nonlocal X, Y
        loss = model(X, Y)[1]
        X, Y = data.get_batch("train", B, T, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lossf = loss.item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return lossf

    return step


# ----------------------------------------------------------------------------- whole commands

def nanogpt_train(c, data_dir, out_dir):
    """nanoGPT's train.py from its first line to its last, single process, CPU, float32, no compile.

    `c`: the settings as a dict (its config/train_shakespeare_char.py with the README's CPU overrides,
    log_interval=1, always_save_checkpoint=False). It trains iterations 0..max_iters and evaluates at
    every multiple of eval_interval, as nanoGPT does.
    """
    from types import SimpleNamespace
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(1337)
    B, T = c["batch_size"], c["block_size"]
    print(f"tokens per iteration will be: {B * T:,}")

    def get_batch(split):
        data = np.memmap(os.path.join(data_dir, f"{split}.bin"), dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy((data[i:i + T]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + T]).astype(np.int64)) for i in ix])
        return x, y

    with open(os.path.join(data_dir, "meta.json")) as f:  # nanoGPT reads meta.pkl; the same one number
        vocab_size = json.load(f)["vocab_size"]
    print(f"found vocab_size = {vocab_size}")
    model_args = dict(n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"], block_size=T,
                      bias=c["bias"], vocab_size=vocab_size, dropout=c["dropout"])
    model = NanoGPT(SimpleNamespace(**model_args))
    print(f"number of parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M")
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    optimizer = model.configure_optimizers(c["weight_decay"], c["learning_rate"], (c["beta1"], c["beta2"]), "cpu")
    ctx = contextlib.nullcontext()

    @torch.no_grad()
    def estimate_loss():
        out = {}
        model.eval()
        for split in ["train", "val"]:
            losses = torch.zeros(c["eval_iters"])
            for k in range(c["eval_iters"]):
                X, Y = get_batch(split)
                with ctx:
                    logits, loss = model(X, Y)
                losses[k] = loss.item()
            out[split] = losses.mean()
        model.train()
        return out

    def get_lr(it):
        if it < c["warmup_iters"]:
            return c["learning_rate"] * (it + 1) / (c["warmup_iters"] + 1)
        if it > c["lr_decay_iters"]:
            return c["min_lr"]
        ratio = (it - c["warmup_iters"]) / (c["lr_decay_iters"] - c["warmup_iters"])
        return c["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c["learning_rate"] - c["min_lr"])

    X, Y = get_batch("train")
    t0 = time.time()
    iter_num, best_val_loss, local_iter_num = 0, 1e9, 0
    while True:
        lr = get_lr(iter_num)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        if iter_num % c["eval_interval"] == 0:
            losses = estimate_loss()
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            if losses["val"] < best_val_loss:
                best_val_loss = losses["val"]
                if iter_num > 0:
                    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "model_args": model_args, "iter_num": iter_num, "best_val_loss": best_val_loss,
                                  "config": c}
                    print(f"saving checkpoint to {out_dir}")
                    torch.save(checkpoint, os.path.join(out_dir, "ckpt.pt"))
        with ctx:
            logits, loss = model(X, Y)
        X, Y = get_batch("train")
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        t1 = time.time()
        dt, t0 = t1 - t0, t1
        lossf = loss.item()  # log_interval = 1
        print(f"iter {iter_num}: loss {lossf:.4f}, time {dt * 1000:.2f}ms")
        iter_num += 1
        local_iter_num += 1
        if iter_num > c["max_iters"]:
            break


def _whole_settings(preset, iters):
    from tinygpt.data import load_dataset
    from tinygpt.presets import make_config
    cfg = make_config(preset, device="cpu", max_iters=iters)
    m = cfg.model
    c = dict(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, block_size=m.block_size, bias=m.bias,
             dropout=m.dropout, **{k: getattr(cfg, k) for k in (
                 "batch_size", "max_iters", "lr_decay_iters", "learning_rate", "min_lr", "warmup_iters", "beta1",
                 "beta2", "weight_decay", "grad_clip", "eval_interval", "eval_iters")})
    return c, str(load_dataset("shakespeare_char").path)


def whole(preset, iters, pairs, tinygpt_args=()):
    """Wall seconds of whole commands, each a fresh process: {name: [seconds per pair]}."""
    c, data_dir = _whole_settings(preset, iters)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    times = {"nanoGPT": [], "tinygpt": []}
    with tempfile.TemporaryDirectory() as tmp:
        def cmd(name, i):
            out = os.path.join(tmp, f"{name}-{i}")
            if name == "nanoGPT":
                return [sys.executable, os.path.abspath(__file__), "--run-nanogpt", json.dumps(c), data_dir, out]
            return [sys.executable, "-m", "tinygpt", "train", "--preset", preset, "--set", f"max_iters={iters}",
                    "--set", "device=cpu", "--out", out, *tinygpt_args]
        for i in range(pairs):
            for name in (("nanoGPT", "tinygpt") if i % 2 == 0 else ("tinygpt", "nanoGPT")):  # ABBA: drift cancels
                t0 = time.perf_counter()
                subprocess.run(cmd(name, i), env=env, cwd=ROOT, check=True,  # -m puts the cwd first: this checkout
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - t0)
            print(f"pair {i + 1}/{pairs}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    return times


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--run-nanogpt":  # the timed child: settings, data, out
        return nanogpt_train(json.loads(sys.argv[2]), sys.argv[3], sys.argv[4])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cpu", help="training preset both models use (default cpu)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds; the median is reported")
    p.add_argument("--iters", type=int, default=None, help="training steps per round (default 20); with --whole, "
                   "max_iters of each run (default the preset's)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--whole", action="store_true", help="time whole training commands, each in a fresh process")
    p.add_argument("--pairs", type=int, default=3, help="with --whole: interleaved pairs; the median is reported")
    p.add_argument("--json", help="also write the figures to this JSON file (atomically)")
    args = p.parse_args(argv)
    from tinygpt.checkpoint import write_json
    if args.whole:
        from tinygpt.presets import make_config
        iters = args.iters or make_config(args.preset).max_iters
        times = whole(args.preset, iters, args.pairs)
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {"preset": args.preset, "max_iters": iters, "pairs": args.pairs, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "wall_s": med, "all_s": times,
                  "ratio_tinygpt_to_nanogpt": med["tinygpt"] / med["nanoGPT"],
                  "pair_ratios": [t / n for t, n in zip(times["tinygpt"], times["nanoGPT"])]}
        print(f"whole command, max_iters={iters}: nanoGPT {med['nanoGPT']:.1f} s, tinygpt {med['tinygpt']:.1f} s, "
              f"ratio {result['ratio_tinygpt_to_nanogpt']:.3f} (per pair: "
              + ", ".join(f"{r:.3f}" for r in result["pair_ratios"]) + ")")
        if args.json:
            write_json(args.json, result)
        return result
    from tinygpt.data import load_dataset
    from tinygpt.presets import make_config
    args.iters = args.iters or 20
    data = load_dataset("shakespeare_char")
    cfg = make_config(args.preset, device="cpu")
    cfg.model.vocab_size = data.vocab_size
    steps = {"nanoGPT": nanogpt_step_fn(cfg, str(data.path)), "tinygpt": tinygpt_step_fn(cfg, data)}
    times = {k: [] for k in steps}
    for fn in steps.values():
        for _ in range(args.warmup):
            fn()
    for r in range(args.rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.iters):
                fn()
            times[name].append(1000 * (time.perf_counter() - t0) / args.iters)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in times.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"preset": args.preset, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "rounds": args.rounds, "iters": args.iters, "ms_per_iter": med, "all_ms": times,
              "ratio_tinygpt_to_nanogpt": med["tinygpt"] / med["nanoGPT"]}
    print(f"nanoGPT {med['nanoGPT']:.1f} ms/iter, tinygpt {med['tinygpt']:.1f} ms/iter, "
          f"ratio {result['ratio_tinygpt_to_nanogpt']:.3f}")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
