"""The GPT: nanoGPT's model, with attention that composes the variants' pieces.

With variant="baseline" this is nanoGPT's model.py: same parameter names, same init, same
numbers. The variants (see variants.py and ../shared/design/variants.md) add logit offsets,
head gates or structure features; each is off unless its variant is chosen.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import variants as V
from .dispatch import Attend


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, as GPT-2; False is a bit better and faster
    variant: str = "baseline"  # a key of tinygpt.VARIANTS
    # Variant knobs; every default is the original study's value.
    span_init: float = 0.5  # window variants: σ = 1 + span_init·L·exp(a), so at a=0 half the context
    key_importance_per_head: bool = False  # key_importance: one ι per token (orig.) or per head and token
    gate_hidden: int = 4  # structure_gate: hidden width as a multiple of its 3H inputs (orig. 12H)
    structure_mlp_postnorm: bool = True  # structure_mlp (orig.): x ← LN₂(x + attn); False: pre-norm control
    structure_mlp_scale_init: float = 4.0  # structure_mlp: per-position scale starts at this × L
    structure_mlp_decay: bool = False  # structure_mlp (orig.): its scale and shift are not weight-decayed
    structure_embedding_norm: bool = False  # structure_embedding (orig.): features enter un-normalised
    block_sparse: bool = True  # hard windows on CUDA without dropout: FlexAttention skips key blocks beyond spans

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer (got {value!r})")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1) (got {self.dropout})")
        V.check_config(self)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nanoGPT's)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.span, self.key_importance, self.gate = V.attention_modules(config)  # each None unless used
        self.attend = Attend.from_config(config)  # the kernel: see dispatch.py
        self.record = None  # set to a dict by tinygpt.capture: then the explicit path runs and fills it

    def forward(self, x, iota=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        span = self.span(x) if self.span is not None else None  # (B|1, nh, T|1) tokens
        if self.key_importance is not None:
            iota = self.key_importance(x, iota)  # (B, 1|nh, T)
        y, stats = self.attend(q, k, v, span, iota, dropout_p=self.dropout if self.training else 0.0,
                               dropout=self.attn_dropout, record=self.record)
        if self.gate is not None:
            g = self.gate(x, stats)  # (B, nh, T)
            y = y * g.unsqueeze(-1).to(y.dtype)
            if self.record is not None:
                self.record["gate"] = g
        y = y.to(x.dtype).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), stats, iota


class MLP(nn.Module):
    def __init__(self, config, n_in=None):
        super().__init__()
        n_in = n_in or config.n_embd
        self.c_fc = nn.Linear(n_in, 4 * n_in, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_in, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.uses, self.postnorm = V.pieces(config).block, config.structure_mlp_postnorm
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, config.n_embd + V.mlp_extra_inputs(config))
        self.structure = V.block_structure(config)  # structure → features (structure_mlp, structure_embedding)

    def forward(self, x, iota=None):
        a, stats, iota = self.attn(self.ln_1(x), iota)
        if self.uses == "mlp_input":  # structure_mlp: the structure joins the MLP's input
            feats = self.structure(stats)  # (B, T, 2H)
            if self.postnorm:  # (orig.) re-normalises the residual stream itself
                x = self.ln_2(x + a)
                return x + self.mlp(torch.cat([x, feats], dim=-1)), iota
            x = x + a
            return x + self.mlp(torch.cat([self.ln_2(x), feats], dim=-1)), iota
        if self.uses == "embedding":  # structure_embedding: full-width gates and shifts of the stream
            f_scale, f_bias, f_loc = self.structure(stats)
            x = x + a * (1 + f_scale) + f_bias
            return x + self.mlp(self.ln_2(x)) + f_loc, iota
        x = x + a
        return x + self.mlp(self.ln_2(x)), iota


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        # ι⁰ from the embedding; each block then adds its own update
        self.key_importance = V.KeyImportance(config) if V.pieces(config).offset == "iota" else None
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):  # scaled residual projections (GPT-2)
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
            if "key_importance.proj" in pn:  # start exactly at the baseline
                torch.nn.init.zeros_(p)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding=True):
        """Parameter count; position embeddings excluded by default, as nanoGPT reports it."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx, targets=None):
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size={self.config.block_size}")
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        iota = self.key_importance(x) if self.key_importance is not None else None
        for block in self.transformer.h:
            x, iota = block(x, iota)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW decaying only 2-D tensors (matmuls, embeddings), as nanoGPT; the fused kernel (CUDA and CPU)."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if getattr(p, "_decay", p.dim() >= 2)]
        no_decay = [p for p in params if not getattr(p, "_decay", p.dim() >= 2)]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=device_type in ("cuda", "cpu"))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Continue idx (B, T) by max_new_tokens tokens, cropping the context to block_size."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive (got {temperature})")
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.config.block_size:]
            logits = self(idx_cond)[0][:, -1, :].float() / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs.cpu(), num_samples=1, generator=generator).to(idx.device)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
