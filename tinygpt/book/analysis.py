"""Summaries of what trained models do, from tinygpt.capture: structure, spans, gates, skipped work."""

import numpy as np
import torch


def val_batch(data, block_size, batch=8, seed=0, device="cpu"):
    """A fixed batch of validation text (B, block_size), the same for every model compared."""
    x, _ = data.get_batch("val", batch, block_size, torch.Generator().manual_seed(seed), device)
    return x


GATE_BATCH = dict(batch=8, seed=0)  # the one batch every chapter quotes gate ranges on (3, 6 and 7)


def gate_batch(data, block_size, device="cpu"):
    """The fixed validation batch on which the book measures gates, so that every chapter quotes the same range."""
    return val_batch(data, block_size, device=device, **GATE_BATCH)


def gate_range(gates):
    """Summary of gate values {layer: (H, N)} (analysis.per_head(cap, "gate")): min, percentiles, max, and the
    share of tokens whose gate is ≥ 1.5× or ≤ 1/1.5× the median."""
    g = np.concatenate([np.asarray(v).ravel() for v in gates.values()])
    med = np.median(g)
    return {"min": g.min(), "p1": np.quantile(g, 0.01), "median": med, "p99": np.quantile(g, 0.99), "max": g.max(),
            "share ≥ 1.5× or ≤ 1/1.5× of the median": np.mean((g >= 1.5 * med) | (g <= med / 1.5))}


def per_head(cap, field, min_pos=0):
    """{layer: (H, N) array} of a capture field over batch and query positions ≥ min_pos.

    field: a stats key (mean_distance, std_distance, mean_logit), "span" or "gate".
    """
    out = {}
    for layer, lc in enumerate(cap.layers):
        t = lc.stats[field] if field in lc.stats else getattr(lc, field)
        if t is None:
            return None
        t = t[:, :, min_pos:]  # (B, H, T')
        out[layer] = t.transpose(0, 1).reshape(t.shape[1], -1).float().cpu().numpy()
    return out


def layer_means(values):
    """{layer: (H, N)} → (L, H) array of per-head means."""
    return np.stack([v.mean(axis=1) for v in values.values()])


def window_skip_share(cap, block=None):
    """Share of causal (query, key) pairs a hard window zeroes (d ≥ σ − 1), per layer.

    With block=k, the share of causal k×k tiles in which every pair is beyond its query's span:
    the work a block-sparse kernel with that tile size skips.
    """
    from ..attention import skipped_fraction

    shares = []
    for lc in cap.layers:
        span = lc.span.float()  # (B, H, T)
        T = span.shape[-1]
        if block is not None:
            shares.append(skipped_fraction(span, T, block))
            continue
        i = torch.arange(T, dtype=torch.float32)
        d = i[:, None] - i[None, :]
        causal = d >= 0
        dead = (d + 1 >= span.unsqueeze(-1)) & causal  # (B, H, T, T)
        shares.append((dead.sum() / (causal.sum() * span.shape[0] * span.shape[1])).item())
    return shares


@torch.no_grad()
def module_outputs(model, idx, attr):
    """Output of `block.<attr>` (e.g. "structure", "attn.key_importance") in every layer, via hooks."""
    from ..capture import unwrap
    model = unwrap(model)
    outs, hooks = [], []
    for block in model.transformer.h:
        mod = block
        for part in attr.split("."):
            mod = getattr(mod, part)
        hooks.append(mod.register_forward_hook(lambda m, args, out: outs.append(out)))
    was_training = model.training
    model.eval()
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return outs


def gate_spread(cap):
    """Every gate of a capture relative to its median, as log2(g / median): 1 is a factor 2 up."""
    g = np.concatenate([lc.gate.flatten().numpy() for lc in cap.layers])
    return np.log2(g / np.median(g))


def span_vs_nearest(window_cap, base_cap, min_pos):
    """Per layer: Spearman ρ over tokens between a window model's shortest span and the baseline's nearest
    look-back (the smallest mean distance over its heads), queries at positions ≥ min_pos."""
    import pandas as pd
    from scipy.stats import spearmanr

    rows = []
    for layer, (w, b) in enumerate(zip(window_cap.layers, base_cap.layers)):
        span = w.span[:, :, min_pos:].amin(1).flatten().numpy()
        near = b.stats["mean_distance"][:, :, min_pos:].amin(1).flatten().numpy()
        rho = spearmanr(span, near).statistic if span.std() > 0 else float("nan")
        rows.append({"layer": layer, "spearman rho": rho, "median span (tokens)": np.median(span),
                     "baseline: median nearest distance (tokens)": np.median(near)})
    return pd.DataFrame(rows)


def gate_table(caps):
    """Per gated model {tag: capture}: the range of its gates and how far they spread around their median."""
    import pandas as pd
    return pd.DataFrame([{"variant": tag, **gate_range(per_head(cap, "gate")),
                          "std of log2(g/median)": gate_spread(cap).std()} for tag, cap in caps.items()])

