"""Look inside a forward pass: attention scores, weights, structure, spans and gates per layer.

    cap = tinygpt.capture(model, idx)
    cap.layers[l].probs      # (B, H, T, T) weights applied to the values
    cap.layers[l].stats["mean_distance"]   # (B, H, T) tokens
    cap.resid[l]             # (B, T, C) residual stream entering block l (cap.resid[-1]: after the last)

The attention runs its explicit path (same numbers as the fused one, to float rounding); the
model's mode and outputs are left as they were.
"""

from dataclasses import dataclass

import torch

from .variants import SD_EPS


@dataclass
class LayerCapture:
    scores: torch.Tensor  # (B, H, T, T) q·k/√d_head, before mask and variant offsets
    probs: torch.Tensor  # (B, H, T, T) causal, rows sum to 1
    stats: dict  # mean_distance, std_distance (tokens), mean_logit; each (B, H, T)
    span: torch.Tensor | None  # (B, H, T) tokens, window variants only
    gate: torch.Tensor | None  # (B, H, T), gate variants only


@dataclass
class Capture:
    layers: list
    resid: list
    logits: torch.Tensor
    idx: torch.Tensor | None = None  # (B, T) the tokens captured


def unwrap(model):
    """The plain GPT inside a torch.compile or DDP wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def token_stats(stats, block_size):
    """The model's normalised structure (rel, sd in units of L) in tokens, ε removed."""
    return {"mean_distance": -block_size * stats["rel"],
            "std_distance": block_size * torch.sqrt((stats["sd"] ** 2 - SD_EPS).clamp_min(0.0)),
            "mean_logit": stats["mean_logit"]}


@torch.no_grad()
def capture(model, idx):
    model = unwrap(model)
    was_training = model.training
    model.eval()
    blocks = list(model.transformer.h)
    resid, hooks = [], []
    for block in blocks:
        block.attn.record = {}
        hooks.append(block.register_forward_pre_hook(lambda mod, args: resid.append(args[0].detach())))
    hooks.append(model.transformer.ln_f.register_forward_pre_hook(lambda mod, args: resid.append(args[0].detach())))
    try:
        logits, _ = model(idx)
        layers = []
        for block in blocks:
            r = block.attn.record
            layers.append(LayerCapture(scores=r["scores"], probs=r["probs"],
                                       stats=token_stats(r["stats"], model.config.block_size),
                                       span=r["span"], gate=r.get("gate")))
    finally:
        for block in blocks:
            block.attn.record = None
        for h in hooks:
            h.remove()
        model.train(was_training)
    return Capture(layers=layers, resid=resid, logits=logits, idx=idx.detach())
