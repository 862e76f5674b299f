"""The pieces the attention variants are made of (math: ../shared/design/variants.md).

A variant is a `GPTConfig.variant` name; the attention module composes a few of the
small pieces below, never a copy of itself:

- a *span* σ (B, H, T) in tokens: query-dependent (`SpanPredictor`) or per head (`HeadSpan`);
- *logit offsets* added to the scores before the one softmax: `soft_window_offset`,
  `ramp_offset` (the hard window's log-ramp), `alibi_offset`, and the key importance;
- a *head gate* (B, H, T) on each head's output: `StructureGate`, `OutputGate`;
- *structure features* (how far back, how widely, how strongly each head looks), consumed
  by `StructureGate`, `StructureMLPFeatures` and `StructureEmbedding`.

`PIECES` (at the end) says which pieces each variant uses; it is the only place that maps variant
names to pieces. attention.Attend picks the kernel that computes them.
"""

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = {
    "baseline": "nanoGPT's attention, unchanged",
    "soft_window": "query-dependent soft window: logit lowered by d/σ, σ learned per head and token",
    "hard_window": "query-dependent hard window: weights ramped to zero at distance σ−1, σ per head and token",
    "key_importance": "learned importance of each token as a key, added to its logits and carried across layers",
    "structure_gate": "each head's output scaled by 2·sigmoid(MLP(attention structure of all heads))",
    "structure_mlp": "causally normalised attention structure appended to the input of the block's MLP",
    "structure_embedding": "attention structure turned by MLPs into full-width gates and shifts of the stream",
    "alibi": "control: fixed per-head linear distance penalty (ALiBi, Press et al. 2021)",
    "learned_span": "control: one learned hard-window span per head (Adaptive Attention Span, Sukhbaatar et al. 2019)",
    "output_gate": "control: sigmoid gate per head from the token's embedding (Gated Attention, Qiu et al. 2025)",
}

RAMP_EPS = 1e-10  # ε of the hard-window ramp: keys beyond the span keep a vanishing weight
SD_EPS = 1e-12  # ε inside the spread's square root


# ----------------------------------------------------------------------------- spans

def span_from_logit(a, block_size, span_init):
    """σ = 1 + span_init·L·exp(a): at a = 0 the window covers span_init of the context."""
    return 1.0 + span_init * block_size * torch.exp(a)


class SpanPredictor(nn.Module):
    """Query-dependent span: a Linear C → H on the token's (normalised) embedding."""

    def __init__(self, config):
        super().__init__()
        self.proj = nn.Linear(config.n_embd, config.n_head)
        self.block_size, self.span_init = config.block_size, config.span_init

    def forward(self, x):  # x (B, T, C) -> σ (B, H, T)
        return span_from_logit(self.proj(x).transpose(1, 2), self.block_size, self.span_init)


class HeadSpan(nn.Module):
    """One learned span per head (Adaptive Attention Span), the same for every token."""

    def __init__(self, config):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(config.n_head))
        self.block_size, self.span_init = config.block_size, config.span_init

    def forward(self, x):  # -> σ (1, H, 1), broadcasts against (B, H, T)
        return span_from_logit(self.a, self.block_size, self.span_init).view(1, -1, 1)


# ----------------------------------------------------------------------------- logit offsets

def distances(T, device):
    """d = i − j as a float (T, T) matrix; negative above the diagonal (masked anyway)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)
    return pos[:, None] - pos[None, :]


def soft_window_offset(span, d):
    """1 − (d + 1)/σ: a linear penalty whose slope 1/σ the query chooses. span (B, H, T)."""
    return 1.0 - (d + 1.0) / span.unsqueeze(-1)  # (B, H, T, T)


def ramp(span, d):
    """r = 1 − exp(−relu(1 − (d + 1)/σ)) + ε: zero (up to ε) for d ≥ σ − 1."""
    return 1.0 - torch.exp(-F.relu(1.0 - (d + 1.0) / span.unsqueeze(-1))) + RAMP_EPS


def ramp_offset(span, d):
    """log r: softmax(s + log r) is the hard window's renormalised (p·r), ε aside."""
    return torch.log(ramp(span, d))


def alibi_slopes(n_head):
    """m_h = 2^(−8h/H), h = 1..H (Press et al. 2021)."""
    return torch.tensor([2.0 ** (-8.0 * h / n_head) for h in range(1, n_head + 1)])


def alibi_offset(n_head, d):
    return -alibi_slopes(n_head).to(d.device).view(1, -1, 1, 1) * d  # (1, H, T, T)


# ----------------------------------------------------------------------------- offsets as q/k channels
# The fused path never builds a T×T offset: an offset Σ_c α_ic·β_jc (up to a row constant, which the
# softmax ignores) is c extra channels, α on the query and β on the key, of the same SDPA call.

POSITION_SPLIT = 256  # bf16 holds the integers up to 256 exactly: above that, j = 256·a + b


def position_channels(T, device):
    """The key position j as exact key channels: kc (T, n) and weights w (n,) with kc @ w = j − c.

    c, a row constant, centres the channel (c = 0 mod 256, about T/2): the fp32 rounding of the
    logits, and the cancellation in the query channel's gradient Σ_j g_ij·kc_j (where Σ_j g_ij = 0),
    grow with |kc|. Up to 256 tokens one channel j − c; beyond, two channels a − c/256 = j // 256 − c/256
    and b = j % 256, each an integer exact in bf16, weighted by 256 and 1: a bf16 query channel 256·x is
    exactly 256 × bf16(x), so positions stay exact under autocast (a bf16 j would merge 257 with 256).
    """
    j = torch.arange(T, device=device, dtype=torch.float32)
    if T <= POSITION_SPLIT:
        return (j - T // 2).unsqueeze(-1), torch.ones(1, device=device)
    a = torch.div(j, POSITION_SPLIT, rounding_mode="floor")
    kc = torch.stack([a - (T // 2) // POSITION_SPLIT, j - POSITION_SPLIT * a], dim=-1)
    return kc, torch.tensor([float(POSITION_SPLIT), 1.0], device=device)


@functools.lru_cache(maxsize=16)
def _position_channels_cached(T, device):
    return position_channels(T, device)


def soft_window_channels(span):
    """1 − (d + 1)/σ_i = [1 − (i + 1)/σ_i] + j/σ_i: query channel 1/σ_i against key channel j.

    span (B, H, T) → qc (B, H, T, n), kc (T, n); the gradient reaches σ through the query channel.
    The key channels depend on T alone: built once per context length (they are never written to).
    """
    kc, w = _position_channels_cached(span.size(-1), span.device)
    inv = span.reciprocal().unsqueeze(-1)
    return (inv if len(w) == 1 else inv * w), kc  # w = [1] up to 256 tokens


@functools.lru_cache(maxsize=16)
def alibi_channels(n_head, T, device):
    """−m_h·(i − j) = −m_h·i + m_h·j: query channel m_h against key channel j. → (1, H, 1, n), (T, n).

    Built once per (H, T, device) and never written to: the slopes come from the host, and a host-to-device
    copy cannot be captured in a CUDA graph (step.GraphStep)."""
    kc, w = position_channels(T, device)
    return alibi_slopes(n_head).to(device).view(1, -1, 1, 1) * w, kc


def key_importance_channels(iota):
    """ι_j on every row: query channel 1 against key channel ι_j. iota (B, K, T) → (1, 1, 1, 1), (B, K, T, 1)."""
    return iota.new_ones(1, 1, 1, 1), iota.unsqueeze(-1)


class KeyImportance(nn.Module):
    """ιˡ = ιˡ⁻¹ + w_l·x: a scalar per token (or per head and token) added to its logits as a key.

    Zero-initialised so training starts at the baseline (the model's init skips `.proj`).
    """

    def __init__(self, config):
        super().__init__()
        self.proj = nn.Linear(config.n_embd, config.n_head if config.key_importance_per_head else 1)

    def forward(self, x, iota=None):  # x (B, T, C) -> ι (B, K, T), K = 1 or H
        update = self.proj(x).transpose(1, 2)
        return update if iota is None else iota + update


# ----------------------------------------------------------------------------- structure

def structure_from_moments(mu, m2, u_query):
    """rel = μ − u_i and sd = sqrt(E[u²] − μ² + ε), positions in units of L. (B, H, T) each."""
    var = (m2 - mu * mu).clamp_min(0.0)  # float rounding can dip below 0
    return mu - u_query, torch.sqrt(var + SD_EPS)


class StructureGate(nn.Module):
    """g = 2·sigmoid(MLP([LN_H(m), LN_H(rel), LN_H(sd)])): each head's output scaled by 0..2."""

    def __init__(self, config):
        H = config.n_head
        super().__init__()
        self.ln_m, self.ln_rel, self.ln_sd = nn.LayerNorm(H), nn.LayerNorm(H), nn.LayerNorm(H)
        self.fc = nn.Linear(3 * H, config.gate_hidden * 3 * H)
        self.out = nn.Linear(config.gate_hidden * 3 * H, H)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, stats):  # stats: dict of (B, H, T) -> gate (B, H, T)
        # The three LayerNorms in one normalisation and one affine map: [LN_m(m), LN_rel(rel), LN_sd(sd)]
        # exactly (bit for bit here), in half the time: LayerNorm over 4 features is slow on CPU, per call.
        f = torch.stack([stats["mean_logit"], stats["rel"], stats["sd"]], dim=1).permute(0, 3, 1, 2)  # (B, T, 3, H)
        f = F.layer_norm(f, f.shape[-1:], eps=self.ln_m.eps)
        lns = (self.ln_m, self.ln_rel, self.ln_sd)
        f = torch.addcmul(torch.stack([ln.bias for ln in lns]), f, torch.stack([ln.weight for ln in lns]))
        h = self.dropout(self.out(F.gelu(self.fc(f.flatten(2)))))
        return 2.0 * torch.sigmoid(h).transpose(1, 2)


class OutputGate(nn.Module):
    """g = sigmoid(W_g x + b_g) per head, from the token alone (no structure)."""

    def __init__(self, config):
        super().__init__()
        self.proj = nn.Linear(config.n_embd, config.n_head)

    def forward(self, x, stats=None):
        return torch.sigmoid(self.proj(x)).transpose(1, 2)  # (B, H, T)


class StructureMLPFeatures(nn.Module):
    """[rel, sd] per head, causally centred, scaled and shifted per position, then LayerNorm(2H).

    Scale (init structure_mlp_scale_init·L) and shift (init 0) have length L, are shared by the
    heads and, as in the original, are not weight-decayed unless `structure_mlp_decay`.
    """

    def __init__(self, config):
        super().__init__()
        L = config.block_size
        self.scale = nn.Parameter(torch.full((L,), config.structure_mlp_scale_init * L))
        self.shift = nn.Parameter(torch.zeros(L))
        self.scale._decay = self.shift._decay = config.structure_mlp_decay
        self.ln = nn.LayerNorm(2 * config.n_head)

    def forward(self, stats):  # -> (B, T, 2H)
        f = torch.cat([stats["rel"], stats["sd"]], dim=1)  # (B, 2H, T)
        T = f.size(-1)
        count = torch.arange(1, T + 1, device=f.device, dtype=f.dtype)
        f = f - f.cumsum(-1) / count  # subtract the running mean over positions ≤ i
        f = f * self.scale[:T] + self.shift[:T]
        return self.ln(f.transpose(1, 2))


class _FeatureMLP(nn.Sequential):
    def __init__(self, n_in, n_out, dropout):
        super().__init__(nn.Linear(n_in, 4 * n_in), nn.GELU(), nn.Linear(4 * n_in, n_out), nn.Dropout(dropout))


class StructureEmbedding(nn.Module):
    """f_scale, f_bias, f_loc: three MLPs from [rel (H), sd (H), H·u_i] to full-width vectors.

    The features are not normalised in the original; `structure_embedding_norm` adds a LayerNorm.
    """

    def __init__(self, config):
        super().__init__()
        n = 2 * config.n_head + 1
        self.n_head, self.block_size = config.n_head, config.block_size
        self.ln = nn.LayerNorm(n) if config.structure_embedding_norm else nn.Identity()
        self.f_scale, self.f_bias, self.f_loc = (_FeatureMLP(n, config.n_embd, config.dropout) for _ in range(3))

    def forward(self, stats):  # -> three (B, T, C) tensors
        rel, sd = stats["rel"], stats["sd"]
        B, _, T = rel.shape
        loc = self.n_head * (torch.arange(T, device=rel.device, dtype=rel.dtype) / self.block_size)
        # built contiguous as (B, T, 2H + 1): each MLP would otherwise copy a transposed view (step 0.95×)
        f = self.ln(torch.cat([rel.transpose(1, 2), sd.transpose(1, 2), loc.view(1, T, 1).expand(B, T, 1)], dim=-1))
        return self.f_scale(f), self.f_bias(f), self.f_loc(f)


# ----------------------------------------------------------------------------- which pieces each variant uses

@dataclass(frozen=True)
class Pieces:
    """What a variant adds to nanoGPT's attention and block; each field None (off) reproduces the baseline."""

    span: str | None = None  # σ: "query" (SpanPredictor, per head and token) or "head" (HeadSpan)
    offset: str | None = None  # logit offset: "soft" (1 − (d+1)/σ), "ramp" (log r), "alibi", "iota" (ι_j)
    gate: str | None = None  # head gate: "structure" (StructureGate) or "output" (OutputGate)
    stats: str | None = None  # structure the attention returns: "positions" (rel, sd) or "all" (+ Σ p s)
    block: str | None = None  # the block uses the structure as: "mlp_input" or "embedding"


PIECES = {
    "baseline": Pieces(),
    "soft_window": Pieces(span="query", offset="soft"),
    "hard_window": Pieces(span="query", offset="ramp"),
    "key_importance": Pieces(offset="iota"),
    "structure_gate": Pieces(gate="structure", stats="all"),
    "structure_mlp": Pieces(stats="positions", block="mlp_input"),
    "structure_embedding": Pieces(stats="positions", block="embedding"),
    "alibi": Pieces(offset="alibi"),
    "learned_span": Pieces(span="head", offset="ramp"),
    "output_gate": Pieces(gate="output"),
}
DISTANCE_OFFSETS = ("soft", "ramp", "alibi")  # offsets of the distance i − j: they need block_size ≥ 2


def pieces(config):
    return PIECES[config.variant]


def attention_modules(config):
    """The attention's variant modules (span, key importance, head gate), each None unless the variant uses it."""
    p = pieces(config)
    span = {"query": SpanPredictor, "head": HeadSpan}[p.span](config) if p.span else None
    key_importance = KeyImportance(config) if p.offset == "iota" else None
    gate = {"structure": StructureGate, "output": OutputGate}[p.gate](config) if p.gate else None
    return span, key_importance, gate


def mlp_extra_inputs(config):
    """Inputs the block's MLP takes beyond the stream: the 2H structure features of structure_mlp."""
    return 2 * config.n_head if pieces(config).block == "mlp_input" else 0


def block_structure(config):
    """The block's module that turns the structure into features, or None."""
    kind = pieces(config).block
    return {"mlp_input": StructureMLPFeatures, "embedding": StructureEmbedding}[kind](config) if kind else None


def check_config(config):
    """Raise a ValueError naming the field for combinations that cannot work."""
    if config.variant not in VARIANTS:
        raise ValueError(f"GPTConfig.variant={config.variant!r} is unknown; valid: {', '.join(VARIANTS)}")
    if pieces(config).offset in DISTANCE_OFFSETS and config.block_size < 2:
        raise ValueError(f"variant {config.variant!r} needs block_size ≥ 2 to have distances (got {config.block_size})")
    if not (config.span_init > 0 and math.isfinite(config.span_init)):
        raise ValueError(f"GPTConfig.span_init must be a positive number (got {config.span_init})")
    if config.gate_hidden < 1:
        raise ValueError(f"GPTConfig.gate_hidden must be ≥ 1 (got {config.gate_hidden})")
    if not config.structure_mlp_scale_init > 0:
        raise ValueError(f"GPTConfig.structure_mlp_scale_init must be positive (got {config.structure_mlp_scale_init})")
