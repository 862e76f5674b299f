"""An independent reference for nanoGPT's model (karpathy/nanoGPT, model.py), for the compatibility tests.

Written from nanoGPT's model.py with plain torch ops on a raw state dict; it imports nothing from
tinygpt, so that a test comparing the two checks tinygpt against nanoGPT, not against itself.

nanoGPT's forward, for reference:
    x = drop(wte(idx) + wpe(pos))
    for each block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
    attn: q, k, v = c_attn(x).split(C); att = softmax(causal(q @ k^T / sqrt(hs))); y = c_proj(att @ v)
    mlp: c_proj(gelu(c_fc(x)))           (exact GELU, nn.GELU())
    logits = lm_head(ln_f(x))            (lm_head.weight is wte.weight)
LayerNorm: F.layer_norm(x, (C,), weight, bias or None, eps=1e-5).
"""

import math

import torch
import torch.nn.functional as F

PREFIX = "_orig_mod."  # what torch.compile puts in front of every key of the saved state dict


def random_state_dict(n_layer, n_head, n_embd, block_size, vocab_size, bias, generator):
    """Random, non-trivial weights under nanoGPT's names (not its init: attention far from uniform).

    Includes nanoGPT's causal-mask buffers `transformer.h.N.attn.bias` (1, 1, T, T), which it
    registers when flash attention is unavailable, and the tied `lm_head.weight` (the same tensor
    as `transformer.wte.weight`, as nanoGPT's state_dict() returns it).
    """
    C = n_embd

    def normal(*shape, std):
        return torch.randn(*shape, generator=generator) * std

    sd = {"transformer.wte.weight": normal(vocab_size, C, std=0.5),
          "transformer.wpe.weight": normal(block_size, C, std=0.5)}

    def linear(name, n_in, n_out, gain=1.0):
        sd[f"{name}.weight"] = normal(n_out, n_in, std=gain / math.sqrt(n_in))
        if bias:
            sd[f"{name}.bias"] = normal(n_out, std=0.1)

    def layernorm(name):
        sd[f"{name}.weight"] = 1.0 + normal(C, std=0.2)
        if bias:
            sd[f"{name}.bias"] = normal(C, std=0.1)

    for i in range(n_layer):
        p = f"transformer.h.{i}"
        layernorm(f"{p}.ln_1")
        linear(f"{p}.attn.c_attn", C, 3 * C, gain=2.0)  # scores of order several units: peaked attention
        linear(f"{p}.attn.c_proj", C, C)
        sd[f"{p}.attn.bias"] = torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size)
        layernorm(f"{p}.ln_2")
        linear(f"{p}.mlp.c_fc", C, 4 * C)
        linear(f"{p}.mlp.c_proj", 4 * C, C)
    layernorm("transformer.ln_f")
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # weight tying
    return sd


def forward(state_dict, idx, n_layer, n_head):
    """nanoGPT's logits (B, T, vocab) for every position, from a (possibly `_orig_mod.`-prefixed) state dict.

    Computed in float64 and returned in float32, so that the reference adds no rounding of its own.
    """
    sd = {k.removeprefix(PREFIX): v.double() for k, v in state_dict.items()}
    B, T = idx.shape
    wte, wpe = sd["transformer.wte.weight"], sd["transformer.wpe.weight"]
    C = wte.shape[1]
    hs = C // n_head

    def ln(name, x):
        return F.layer_norm(x, (C,), sd[f"{name}.weight"], sd.get(f"{name}.bias"), 1e-5)

    def lin(name, x):
        return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))

    x = wte[idx] + wpe[torch.arange(T)]  # (B, T, C); dropout is off in eval
    for i in range(n_layer):
        p = f"transformer.h.{i}"
        h = ln(f"{p}.ln_1", x)
        q, k, v = lin(f"{p}.attn.c_attn", h).split(C, dim=2)
        q, k, v = (t.view(B, T, n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        causal = sd[f"{p}.attn.bias"][:, :, :T, :T] if f"{p}.attn.bias" in sd else torch.ones(T, T).tril()
        att = att.masked_fill(causal == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + lin(f"{p}.attn.c_proj", y)
        h = ln(f"{p}.ln_2", x)
        x = x + lin(f"{p}.mlp.c_proj", F.gelu(lin(f"{p}.mlp.c_fc", h)))
    return F.linear(ln("transformer.ln_f", x), sd["lm_head.weight"]).float()


def checkpoint(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=65, bias=False, dropout=0.2, seed=0):
    """A checkpoint dict as nanoGPT's train.py writes it (compiled model, so keys carry `_orig_mod.`)."""
    g = torch.Generator().manual_seed(seed)
    sd = random_state_dict(n_layer, n_head, n_embd, block_size, vocab_size, bias, g)
    model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                      vocab_size=vocab_size, dropout=dropout)
    # an optimizer state of the shape nanoGPT saves (AdamW's state dict: tensors, ints, floats, tuples)
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([w], lr=1e-3, betas=(0.9, 0.99))
    w.sum().backward()
    opt.step()
    config = dict(out_dir="out-shakespeare-char", eval_interval=250, eval_iters=200, log_interval=10,
                  always_save_checkpoint=False, wandb_log=False, dataset="shakespeare_char",
                  gradient_accumulation_steps=1, batch_size=64, block_size=block_size, n_layer=n_layer,
                  n_head=n_head, n_embd=n_embd, dropout=dropout, bias=bias, learning_rate=1e-3, max_iters=5000,
                  weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, decay_lr=True, warmup_iters=100,
                  lr_decay_iters=5000, min_lr=1e-4, backend="nccl", device="cuda", dtype="bfloat16", compile=True)
    return {"model": {PREFIX + k: v for k, v in sd.items()}, "optimizer": opt.state_dict(),
            "model_args": model_args, "iter_num": 2500, "best_val_loss": torch.tensor(1.4697), "config": config}
