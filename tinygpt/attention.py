"""Attention kernels: one fused call for training, an explicit one for analysis, a dense one with a
hand-written backward for the structure on CPU, and two for the hard window (dense with a hand-written
backward on CPU, block-sparse FlexAttention on CUDA). dispatch.py chooses which one a variant takes.

The fused and explicit paths take q, k, v of shape (B, H, T, D) and an optional additive logit
`offset` broadcastable to (B, H, T, T) (the sum of every variant's offsets), apply the causal mask
and one softmax, and return `y` (B, H, T, D) and, when asked, the attention structure:

    rel = Σ_j p_ij u_j − u_i,  sd = sqrt(Σ_j p_ij u_j² − (Σ_j p_ij u_j)² + ε),  mean_logit = Σ_j p_ij s_ij

with u_j = j / L. The fused path also takes offsets of low rank (soft window, ALiBi, key importance)
as extra q/k `channels` instead of a T×T tensor, so that they too run on the flash kernel.

The fused path gets them without a T×T weight matrix: each is a weighted average
of something linear in the key (u_j, u_j², and k_j since Σ p s = q·Σ p k / √D), so they ride along
as extra value channels of the same scaled_dot_product_attention call.
"""

import math

import torch
import torch.nn.functional as F

from .variants import RAMP_EPS, SD_EPS, distances, structure_from_moments

FLEX_BLOCK = 128  # FlexAttention's tile: the unit in which key blocks are skipped
MASKED_SCORE = -1e30  # the dense structure path's masked scores: exp underflows to 0, |dm·s| stays finite
DENSE_STRUCTURE_MAX_T = 256  # CPU, no dropout: the structure's moments from dense weights up to this context


def causal_bias(offset, T):
    """offset (…, T, T) → float mask with −inf above the diagonal, for SDPA's attn_mask."""
    upper = torch.ones(T, T, dtype=torch.bool, device=offset.device).triu(1)
    return offset.masked_fill(upper, float("-inf"))


def _positions(T, block_size, device, dtype=torch.float32):
    return torch.arange(T, device=device, dtype=dtype) / block_size  # u (T,)


def _pad_to(t, width):
    return t if t.size(-1) == width else F.pad(t, (0, width - t.size(-1)))


def attend_fused(q, k, v, offset=None, *, channels=None, stats=None, block_size, dropout_p=0.0, align=1):
    """Training path. `stats`: None, "positions" (rel, sd) or "all" (also mean_logit).

    `channels`: (qc, kc), broadcastable to (B, H, T, n) each: a logit offset Σ_c qc_ic·kc_jc (see
    variants.soft_window_channels) added as n extra q/k channels, so the flash kernel applies it with
    no T×T tensor. `offset`: a dense (…, T, T) offset instead (SDPA's attn_mask). `align`: with extra
    channels, the head size is padded with zero columns to a multiple of this (CUDA's kernels want 8).
    """
    B, H, T, D = q.shape
    mask = None if offset is None else causal_bias(offset.to(q.dtype), T)
    if stats is None and channels is None:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None)
        return y, None
    q0 = q
    if stats is not None:
        # Structure channels in float32 even under bf16 autocast: sd = sqrt(E[u²] − μ²) cancels badly.
        q, k, v = q.float(), k.float(), v.float()
        mask = None if mask is None else mask.float()
    values = v
    if stats is not None:
        u = _positions(T, block_size, q.device).view(1, 1, T, 1).expand(B, H, T, 1)
        values = torch.cat([v, u, u * u] + ([k] if stats == "all" else []), dim=-1)  # (B, H, T, D + 2 [+ D])
    if channels is not None:
        qc, kc = channels
        n = qc.size(-1)
        # the kernel's 1/√D scale turns √D·qc·kc back into qc·kc; one rounding to q's dtype, at the end
        qc = qc.to(torch.promote_types(qc.dtype, q.dtype)) * math.sqrt(D)
        q = torch.cat([q, qc.to(q.dtype).expand(B, H, T, n)], dim=-1)  # (B, H, T, D + n)
        k = torch.cat([k, kc.to(k.dtype).expand(B, H, T, n)], dim=-1)
    # Flash kernels want one head size for q, k and v (else SDPA falls back to its slow T×T math
    # path): zero columns on q and k leave every score q·k as it was, zero value columns give zero
    # outputs; the scale stays 1/√D. CUDA's flash and memory-efficient kernels also want a multiple
    # of 8 (65 columns fell to the math path: soft_window's step 1.48× the baseline's on an H200);
    # on CPU at the cpu preset 40 columns cost more than 33, so align is 1 there.
    width = -(-max(q.size(-1), values.size(-1)) // align) * align
    out = F.scaled_dot_product_attention(_pad_to(q, width), _pad_to(k, width), _pad_to(values, width),
                                         attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None,
                                         scale=1.0 / math.sqrt(D))
    y = out[..., :D]
    if stats is None:
        return y, None
    # With dropout the moments are unbiased estimates of the exact ones (the mask averages out).
    mu, m2 = out[..., D], out[..., D + 1]
    rel, sd = structure_from_moments(mu, m2, u[..., 0])
    st = {"rel": rel, "sd": sd}
    if stats == "all":  # Σ_j p_ij s_ij with the plain scores: the channels are not part of s
        st["mean_logit"] = (q0.float() * out[..., D + 2:D + 2 + D]).sum(-1) / math.sqrt(D)
    return y, st


def attend_explicit(q, k, v, offset=None, *, block_size, dropout=None):
    """Analysis path: materialises scores and weights; returns y, stats and both matrices."""
    B, H, T, D = q.shape
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H, T, T), before mask and offsets
    logits = scores if offset is None else scores + offset
    probs = F.softmax(causal_bias(logits, T), dim=-1)
    y = (probs if dropout is None else dropout(probs)) @ v
    u = _positions(T, block_size, q.device, probs.dtype)
    mu = probs @ u  # (B, H, T)
    var = (probs * (u.view(1, 1, 1, T) - mu.unsqueeze(-1)) ** 2).sum(-1)
    stats = {"rel": mu - u, "sd": torch.sqrt(var + SD_EPS), "mean_logit": (probs * scores).sum(-1)}
    return y, stats, scores, probs


# ----------------------------------------------------------------------------- dense structure

class _DenseStructure(torch.autograd.Function):
    """softmax(s) @ v with the structure's moments Σ p u, Σ p u² and, if asked, Σ p s; backward by hand.

    On CPU at short contexts this is cheaper than the fused path's extra value channels: Σ p s costs
    one elementwise pass over the weights instead of D more value (and zero q/k) columns. With
    c_i = dy_i·y_i + Σ_n dμ_ni·μ_ni + dm_i·(m_i − 1), the scores' gradient is

        ds_ij = p_ij (dy_i·v_j + Σ_n dμ_ni·U_jn + dm_i·s_ij − c_i),   U = [u, u²].
    """

    @staticmethod
    def forward(ctx, q, k, v, U, mean_logit):
        B, H, T, D = q.shape
        N = B * H
        qs = _scaled(q).view(N, T, D)
        k, v = k.contiguous().view(N, T, D), v.contiguous().view(N, T, D)
        s = torch.bmm(qs, k.transpose(1, 2))
        # masked in place with a finite value: p = 0 there all the same, and p·s stays 0 (−inf would give NaN)
        s.masked_fill_(torch.ones(T, T, dtype=torch.bool, device=q.device).triu_(1), MASKED_SCORE)
        p = torch.softmax(s, dim=-1)
        y = torch.bmm(p, v)
        mom = (p.view(N * T, T) @ U).view(B, H, T, 2)
        m = (p * s).sum(-1).view(B, H, T) if mean_logit else None
        ctx.shape = q.shape
        ctx.save_for_backward(qs, k, v, U, p, s if mean_logit else None, y, mom, m)
        return y.view(B, H, T, D), mom, m

    @staticmethod
    def backward(ctx, dy, dmom, dm):
        qs, k, v, U, p, s, y, mom, m = ctx.saved_tensors
        N, T, D = qs.shape
        dy = dy.contiguous().view(N, T, D)
        ds = torch.bmm(dy, v.transpose(1, 2))
        c = (dy * y).sum(-1)
        if dmom is not None:
            dmom = dmom.reshape(N * T, 2)
            ds.view(N * T, T).addmm_(dmom, U.t())
            c += (dmom * mom.view(N * T, 2)).sum(-1).view(N, T)
        if dm is not None and s is not None:
            dm = dm.reshape(N, T, 1)
            ds.addcmul_(dm, s)
            c += ((m.view(N, T, 1) - 1.0) * dm).squeeze(-1)  # Σ_j p dP adds dm·m; ∂m/∂s itself adds dm·p
        ds.sub_(c.unsqueeze(-1)).mul_(p)
        dq = torch.bmm(ds, k).mul_(1.0 / math.sqrt(D))
        dk = torch.bmm(ds.transpose(1, 2), qs)
        dv = torch.bmm(p.transpose(1, 2), dy)
        return dq.view(ctx.shape), dk.view(ctx.shape), dv.view(ctx.shape), None, None


def attend_dense_structure(q, k, v, *, stats, block_size):
    """attend_fused(q, k, v, stats=stats) without offset or dropout, dense: every T×T weight is kept.

    structure_gate (stats="all") takes it on CPU up to DENSE_STRUCTURE_MAX_T (cpu preset: its step 0.93×); for
    rel and sd alone the fused path's two extra channels measured faster.
    """
    B, H, T, D = q.shape
    dt = torch.promote_types(q.dtype, torch.float32)
    u = _positions(T, block_size, q.device, dt)
    with torch.autocast(q.device.type, enabled=False):
        y, mom, m = _DenseStructure.apply(q.to(dt), k.to(dt), v.to(dt), torch.stack([u, u * u], -1),
                                          stats == "all")
    rel, sd = structure_from_moments(mom[..., 0], mom[..., 1], u)
    return y.to(q.dtype), ({"rel": rel, "sd": sd} if m is None else {"rel": rel, "sd": sd, "mean_logit": m})


def _scaled(q):
    """q / √D as a contiguous copy: bmm on the (B, T, H, D)-strided views loops over matrices, several times slower."""
    return torch.empty_like(q, memory_format=torch.contiguous_format).copy_(q).mul_(1.0 / math.sqrt(q.size(-1)))


# ----------------------------------------------------------------------------- dense hard window

class _HardWindow(torch.autograd.Function):
    """softmax(s + log r) @ v with r the hard window's ramp, forward and backward by hand.

    Autograd through the dense offset keeps about ten (B, H, T, T) tensors per layer and runs SDPA's
    math path on top; this keeps the weights p only and rebuilds the ramp from σ in the backward:

        dl = p ⊙ (dy·vᵀ − rowsum(dy ⊙ y)),   dσ_i = Σ_j dl_ij · [z_ij > 0] · e_ij / r_ij · (d_ij + 1) / σ_i²

    with z = 1 − (d + 1)/σ, e = exp(−z) and r = 1 − e + ε (variants.ramp; relu′(0) = 0, as autograd's).
    """

    @staticmethod
    def forward(ctx, q, k, v, span):
        B, H, T, D = q.shape
        qs, k, v = _scaled(q), k.contiguous(), v.contiguous()
        e, _ = _ramp_exp(span, T)  # (B|1, H, T, T): one span per head (learned_span) needs no batch
        logr = e.neg_().add_(1.0).add_(RAMP_EPS).log_()  # log r, in place: a T×T pass costs like a matmul
        if logr.shape[0] == B:  # the scores accumulate straight into the offset
            logits = logr
            logits.view(B * H, T, T).baddbmm_(qs.view(B * H, T, D), k.view(B * H, T, D).transpose(1, 2))
        else:
            logits = (qs @ k.transpose(-2, -1)).add_(logr)
        logits.masked_fill_(torch.ones(T, T, dtype=torch.bool, device=q.device).triu_(1), float("-inf"))
        p = torch.softmax(logits, dim=-1)
        y = p @ v
        ctx.save_for_backward(qs, k, v, span, p, y)
        return y

    @staticmethod
    def backward(ctx, dy):
        qs, k, v, span, p, y = ctx.saved_tensors
        dy = dy.contiguous()
        dv = p.transpose(-2, -1) @ dy
        dl = dy @ v.transpose(-2, -1)
        dl.sub_((dy * y).sum(-1, keepdim=True)).mul_(p)  # the softmax's backward; 0 wherever p is
        dq = (dl @ k).mul_(1.0 / math.sqrt(qs.size(-1)))
        dk = dl.transpose(-2, -1) @ qs
        dspan = None
        if ctx.needs_input_grad[3]:
            e, d1 = _ramp_exp(span, qs.size(-2))
            inside = e < 1.0  # z > 0: beyond the span (and above the diagonal) the ramp is flat, no gradient
            # ∂log r/∂σ = e/r · (d + 1)/σ², with r = 1 − e + ε
            w = torch.where(inside, e / e.neg().add_(1.0).add_(RAMP_EPS), 0.0).mul_(d1)
            dspan = ((dl * w).sum(-1) / span.square()).sum_to_size(span.shape)
        return dq, dk, dv, dspan


def _ramp_exp(span, T):
    """e = exp(−relu(z)), z = 1 − (d + 1)/σ, as (B|1, H, T, T) for span (B|1, H, T|1); and d + 1.

    The hard window's ramp is r = 1 − e + ε. −relu(1 − t) is computed as min(t − 1, 0), which IEEE
    subtraction makes bit-equal to variants.ramp's.
    """
    d1 = distances(T, span.device).add_(1.0)
    e = torch.div(d1, span.contiguous().unsqueeze(-1)).sub_(1.0).clamp_max_(0.0).exp_()
    return e, d1


def attend_hard_window(q, k, v, span):
    """Hard window, dense (every T×T logit), without attention dropout. span (B|1, H, T|1) in tokens.

    Under autocast the weights and their backward are computed in float32, as SDPA's math path does.
    """
    dt = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):
        y = _HardWindow.apply(q.to(dt), k.to(dt), v.to(dt), span.to(dt))
    return y.to(q.dtype)


# ----------------------------------------------------------------------------- block-sparse hard window

def window_block_mask(span, T, block=FLEX_BLOCK):
    """Per (batch, head, query block), the key blocks that any of its queries can reach.

    Query i needs keys j with i − j + 1 < σ_i, i.e. j ≥ floor(i + 1 − σ_i) + 1; a query block needs
    every key block from the lowest such j of its rows up to its own diagonal block. Returns
    (kv_num_blocks (B, H, NQ), kv_indices (B, H, NQ, NQ)) as FlexAttention's BlockMask wants.
    """
    B, H, _ = span.shape
    nq = -(-T // block)
    i = torch.arange(T, device=span.device, dtype=span.dtype)
    lowest = (torch.floor(i + 1 - span) + 1).clamp_min(0)  # (B, H, T)
    pad = nq * block - T
    lowest = F.pad(lowest, (0, pad), value=float(T))  # padded rows need nothing
    lo_block = (lowest.view(B, H, nq, block).amin(-1) // block).long()  # (B, H, NQ)
    q_block = torch.arange(nq, device=span.device)
    kv_num = (q_block - lo_block + 1).int()
    kv_idx = (lo_block.unsqueeze(-1) + torch.arange(nq, device=span.device)).clamp_max(nq - 1).int()
    return kv_num, kv_idx


_compiled_flex = None
DROPPED_SCORE = -1e4  # a dropped key's score in the two-pass dropout: e^(−1e4) is 0 in float32, and never NaN


def attend_flex_window(q, k, v, span, *, dropout_p=0.0, block=FLEX_BLOCK):
    """Hard window with FlexAttention: skips key blocks beyond every query's span.

    Numerically the dense path's softmax(s + log r), except that keys with d ≥ σ − 1 get exactly
    zero weight instead of the ε-sized weight of the dense ramp. span (B, H, T) in tokens.

    With attention dropout (weights p_ij·m_ij / (1 − p), m_ij ~ Bernoulli(1 − p), not renormalised,
    as SDPA's), in two passes, since FlexAttention's softmax renormalises over whatever it keeps:
    the kept keys' softmax y' with lse' = log Σ_kept e^l, and the whole window's lse; then
    y = y'·e^(lse' − lse) / (1 − p) = Σ_j p_ij·m_ij·v_j / (1 − p). No T×T float tensor: the mask m
    is one byte per weight, saved for the backward.
    """
    global _compiled_flex
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    B, H, T, D = q.shape
    span = span.expand(B, H, T)

    def score_mod(score, b, h, qi, kj):
        z = 1.0 - (qi - kj + 1).to(torch.float32) / span[b, h, qi]
        return score + torch.log(1.0 - torch.exp(-torch.relu(z)) + RAMP_EPS)

    bound = span.detach()  # torch refuses a mask_mod buffer that requires grad (the mask has no gradient)

    def mask_mod(b, h, qi, kj):
        return (kj <= qi) & (qi - kj + 1 < bound[b, h, qi])

    kv_num, kv_idx = window_block_mask(bound, T, block)
    block_mask = BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(T, T))
    fn = flex_attention
    if q.is_cuda:  # eager FlexAttention is a dense reference; the speed comes from compiling it
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        fn = _compiled_flex
    if not dropout_p:
        return fn(q, k, v, score_mod=score_mod, block_mask=block_mask)
    keep = torch.empty(B, H, T, T, dtype=torch.bool, device=q.device).bernoulli_(1.0 - dropout_p)

    def kept_mod(score, b, h, qi, kj):
        return torch.where(keep[b, h, qi, kj], score_mod(score, b, h, qi, kj), DROPPED_SCORE)

    y_kept, lse_kept = _with_lse(fn, q, k, v, kept_mod, block_mask)
    _, lse = _with_lse(fn, q, k, v, score_mod, block_mask)
    scale = torch.exp(lse_kept - lse).unsqueeze(-1) / (1.0 - dropout_p)  # (B, H, T, 1), float32
    return (y_kept * scale).to(q.dtype)


def _with_lse(fn, q, k, v, score_mod, block_mask):
    """FlexAttention's output and log-sum-exp (natural log) of the scores, (B, H, T) float32."""
    from torch.nn.attention import flex_attention as flex
    if hasattr(flex, "AuxRequest"):  # torch ≥ 2.9; return_lse is deprecated there
        y, aux = fn(q, k, v, score_mod=score_mod, block_mask=block_mask, return_aux=flex.AuxRequest(lse=True))
        return y, aux.lse
    return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, return_lse=True)


def skipped_fraction(span, T, block=FLEX_BLOCK):
    """Share of the causal key blocks that the block-sparse hard window skips."""
    kv_num, _ = window_block_mask(span.detach().float(), T, block)
    nq = kv_num.size(-1)
    causal = nq * (nq + 1) / 2
    return 1.0 - kv_num.float().sum(-1).mean().item() / causal
