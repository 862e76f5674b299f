"""Every attention variant: causal, captured, computing its equation (../shared/design/variants.md), trainable.

The equations are re-implemented here in float64 from variants.md, from capture's scores and spans
only; they share no code with tinygpt.variants.
"""

import dataclasses
import math
import os
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tinygpt
import tinygpt.dispatch
from tinygpt import GPT, GPTConfig
from tinygpt import variants as V
from tinygpt.attention import (
    attend_dense_structure,
    attend_explicit,
    attend_flex_window,
    attend_fused,
    attend_hard_window,
    skipped_fraction,
    window_block_mask,
)

VARIANTS = list(tinygpt.VARIANTS)
HARD_SPAN = ("hard_window", "learned_span")
SPAN_VARIANTS = ("soft_window", "hard_window", "learned_span")
GATE_VARIANTS = ("structure_gate", "output_gate")
EPS = 1e-10  # the hard window's ε (variants.md)
ATOL = 1e-5  # float32 model against a float64 re-computation: a few ulps of weights and logits of order 1
L = 32  # block_size of the test models


pytestmark = pytest.mark.usefixtures("one_thread")


def config(variant="baseline", **overrides):
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=L, vocab_size=65, dropout=0.0, bias=True,
                variant=variant)
    return GPTConfig(**{**args, **overrides})


def model_for(variant, noise=0.2, seed=0, **overrides):
    """A tiny model moved well away from init (N(0, noise) added to every parameter), in eval mode.

    At init the attention is nearly uniform and several variants are exactly the baseline; the noise
    gives scores of order 1, spans from a few tokens to several L, and gates away from their midpoint.
    """
    torch.manual_seed(seed)
    model = GPT(config(variant, **overrides))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise)
    return model.eval()


def tokens(B, T, seed=0):
    return torch.randint(0, 65, (B, T), generator=torch.Generator().manual_seed(seed))


def causal_softmax(logits):
    T = logits.size(-1)
    upper = torch.ones(T, T, dtype=torch.bool).triu(1)
    return logits.masked_fill(upper, float("-inf")).softmax(-1)


def dist(T):
    i = torch.arange(T, dtype=torch.float64)
    return i[:, None] - i[None, :]  # d = i − j


# ----------------------------------------------------------------------------- causality

@pytest.mark.parametrize("variant", VARIANTS)
def test_causal(variant):
    model = model_for(variant)
    T = L
    idx = tokens(2, T)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        base, _ = model(idx)
        for t in torch.randint(0, T - 1, (3,), generator=gen).tolist() + [0, T - 2]:
            changed = idx.clone()
            changed[:, t + 1:] = (idx[:, t + 1:] + torch.randint(1, 65, (2, T - t - 1), generator=gen)) % 65
            logits, _ = model(changed)
            # masked keys contribute exp(−inf) = 0 exactly, and every row is computed by the same kernels:
            # the past must be bit for bit the same
            assert torch.equal(logits[:, : t + 1], base[:, : t + 1]), f"position ≤ {t} sees the future"
            assert not torch.allclose(logits[:, t + 1:], base[:, t + 1:])  # the change did reach the model
    cap = tinygpt.capture(model, idx)
    upper = torch.ones(T, T, dtype=torch.bool).triu(1)
    for layer in cap.layers:
        assert torch.count_nonzero(layer.probs[..., upper]) == 0


# ----------------------------------------------------------------------------- capture

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("training", [False, True])
def test_capture(variant, training):
    model = model_for(variant)
    model.train(training)
    B, T, H, C = 2, 24, 4, 32
    idx = tokens(B, T)
    cap = tinygpt.capture(model, idx)
    assert model.training is training
    assert all(block.attn.record is None for block in model.transformer.h)
    model.eval()
    with torch.no_grad():
        logits, _ = model(idx)
    torch.testing.assert_close(cap.logits, logits, atol=ATOL, rtol=0)
    assert len(cap.layers) == 2 and len(cap.resid) == 3
    assert all(r.shape == (B, T, C) for r in cap.resid)
    with torch.no_grad():  # resid[0] is the embedding, resid[-1] what ln_f and lm_head turn into the logits
        torch.testing.assert_close(cap.resid[0], model.transformer.wte(idx) + model.transformer.wpe(torch.arange(T)),
                                   atol=0, rtol=0)
        torch.testing.assert_close(model.lm_head(model.transformer.ln_f(cap.resid[-1])), logits, atol=ATOL, rtol=0)
    for li, layer in enumerate(cap.layers):
        assert layer.scores.shape == layer.probs.shape == (B, H, T, T)
        torch.testing.assert_close(layer.probs.sum(-1), torch.ones(B, H, T), atol=ATOL, rtol=0)
        assert set(layer.stats) == {"mean_distance", "std_distance", "mean_logit"}
        assert all(s.shape == (B, H, T) for s in layer.stats.values())
        assert (layer.span is not None) == (variant in SPAN_VARIANTS)
        assert (layer.gate is not None) == (variant in GATE_VARIANTS)
        for extra in (layer.span, layer.gate):
            assert extra is None or extra.shape == (B, H, T)
        # scores are q·k/√D of the block's normalised input, before mask and offsets
        attn = model.transformer.h[li].attn
        with torch.no_grad():
            q, k, _ = attn.c_attn(model.transformer.h[li].ln_1(cap.resid[li])).double().split(C, dim=2)
        q, k = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k))
        torch.testing.assert_close(layer.scores.double(), q @ k.transpose(-2, -1) / math.sqrt(C // H),
                                   atol=ATOL, rtol=0)
        assert layer.scores.triu(1).abs().sum() > 0  # scores are not masked


# ----------------------------------------------------------------------------- the equations

def expected_probs(variant, model, cap, li):
    """The variant's attention weights from variants.md, in float64, from capture's scores and spans."""
    layer = cap.layers[li]
    s = layer.scores.double()
    B, H, T, _ = s.shape
    d = dist(T)
    if variant == "soft_window":
        sigma = layer.span.double().unsqueeze(-1)
        return causal_softmax(s + 1 - (d + 1) / sigma)
    if variant == "alibi":
        m = torch.tensor([2.0 ** (-8 * h / H) for h in range(1, H + 1)], dtype=torch.float64)
        return causal_softmax(s - m.view(1, H, 1, 1) * d)
    if variant in ("hard_window", "learned_span"):
        sigma = layer.span.double().unsqueeze(-1)
        p0 = causal_softmax(s)
        r = 1 - torch.exp(-torch.relu(1 - (d + 1) / sigma)) + EPS
        w = ((p0 + EPS) * r).masked_fill(d < 0, 0.0)
        return w / w.sum(-1, keepdim=True)
    if variant == "key_importance":
        # ι⁰ = w₀·e (the embedding, = resid[0] in eval), ιˡ = ιˡ⁻¹ + w_l·LN₁(x_l); added to every row
        with torch.no_grad():
            iota = model.key_importance.proj(cap.resid[0]).double()
            for m in range(li + 1):
                block = model.transformer.h[m]
                iota = iota + block.attn.key_importance.proj(block.ln_1(cap.resid[m])).double()
        return causal_softmax(s + iota.transpose(1, 2).unsqueeze(2))  # ι_j: (B, K, 1, T)
    return causal_softmax(s)  # the other variants leave the weights alone


@pytest.mark.parametrize("variant", VARIANTS)
def test_probs_follow_the_equation(variant):
    model = model_for(variant)
    cap = tinygpt.capture(model, tokens(2, L))
    for li, layer in enumerate(cap.layers):
        expected = expected_probs(variant, model, cap, li)
        torch.testing.assert_close(layer.probs.double(), expected, atol=ATOL, rtol=0)
        # not trivially so: the weights are far from uniform and (for offsets) from the plain softmax
        assert (layer.probs - causal_softmax(torch.zeros(L, L))).abs().max() > 0.1
        if V.PIECES[variant].offset is not None:
            assert (layer.probs - causal_softmax(layer.scores)).abs().max() > 1e-3


@pytest.mark.parametrize("per_head", [False, True])
def test_key_importance_per_head(per_head):
    model = model_for("key_importance", key_importance_per_head=per_head)
    assert model.key_importance.proj.out_features == (4 if per_head else 1)
    cap = tinygpt.capture(model, tokens(2, L))
    for li, layer in enumerate(cap.layers):
        torch.testing.assert_close(layer.probs.double(), expected_probs("key_importance", model, cap, li),
                                   atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", ["soft_window", "hard_window"])
def test_query_dependent_span(variant):
    """σ = 1 + (L/2)·exp(W_σ x + b_σ) with x the block's normalised input: per head and token."""
    model = model_for(variant)
    cap = tinygpt.capture(model, tokens(2, L))
    for li, layer in enumerate(cap.layers):
        block = model.transformer.h[li]
        with torch.no_grad():
            a = F.linear(block.ln_1(cap.resid[li]).double(), block.attn.span.proj.weight.double(),
                         block.attn.span.proj.bias.double())
        sigma = 1 + L / 2 * torch.exp(a.transpose(1, 2))
        torch.testing.assert_close(layer.span.double(), sigma, atol=0, rtol=1e-5)
        assert layer.span.std() > 1.0  # spans do vary by token and head


def test_learned_span_is_one_span_per_head():
    model = model_for("learned_span")
    cap = tinygpt.capture(model, tokens(2, L))
    for li, layer in enumerate(cap.layers):
        a = model.transformer.h[li].attn.span.a.detach().double()
        expected = (1 + L / 2 * torch.exp(a)).view(1, -1, 1).expand_as(layer.span)
        torch.testing.assert_close(layer.span.double(), expected, atol=0, rtol=1e-6)


def test_gates():
    # output_gate: g = sigmoid(W_g x + b_g) from the block's normalised input
    model = model_for("output_gate")
    cap = tinygpt.capture(model, tokens(2, L))
    for li, layer in enumerate(cap.layers):
        block = model.transformer.h[li]
        with torch.no_grad():
            z = F.linear(block.ln_1(cap.resid[li]).double(), block.attn.gate.proj.weight.double(),
                         block.attn.gate.proj.bias.double())
        torch.testing.assert_close(layer.gate.double(), torch.sigmoid(z).transpose(1, 2), atol=ATOL, rtol=0)
    # structure_gate: g = 2·sigmoid(MLP([LN_H(m), LN_H(rel), LN_H(sd)])), the structure in units of L
    model = model_for("structure_gate")
    cap = tinygpt.capture(model, tokens(2, L))
    for layer, block in zip(cap.layers, model.transformer.h):
        gate = block.attn.gate
        st = layer.stats
        rel = -st["mean_distance"] / L
        sd = torch.sqrt((st["std_distance"] / L) ** 2 + V.SD_EPS)
        with torch.no_grad():
            feats = torch.cat([gate.ln_m(st["mean_logit"].transpose(1, 2)), gate.ln_rel(rel.transpose(1, 2)),
                               gate.ln_sd(sd.transpose(1, 2))], dim=-1)
            g = 2 * torch.sigmoid(gate.out(F.gelu(gate.fc(feats)))).transpose(1, 2)
        torch.testing.assert_close(layer.gate, g, atol=ATOL, rtol=0)
        assert layer.gate.min() >= 0 and layer.gate.max() <= 2 and layer.gate.std() > 0.01


# ----------------------------------------------------------------------------- the hard window

def small_span_model(variant):
    """Spans of a few tokens: b_σ = log(4 / (L/2)) puts σ near 5 (the small weight noise spreads it)."""
    model = model_for(variant, noise=0.05)
    with torch.no_grad():
        for block in model.transformer.h:
            if variant == "hard_window":
                block.attn.span.proj.bias.fill_(math.log(4 / (0.5 * L)))
            else:  # one span per head: 2.5, 5, 9 and 40 (≥ T: no key beyond it) tokens
                block.attn.span.a.copy_(torch.log((torch.tensor([2.5, 5.0, 9.0, 40.0]) - 1) / (0.5 * L)))
    return model


@pytest.mark.parametrize("variant", HARD_SPAN)
def test_hard_window_drops_keys_beyond_the_span(variant):
    model = small_span_model(variant)
    cap = tinygpt.capture(model, tokens(2, L))
    d = dist(L)
    for layer in cap.layers:
        sigma = layer.span.double().unsqueeze(-1)
        beyond = (d >= sigma - 1) & (d >= 0) & (sigma >= 2)
        causal = (d >= 0).expand_as(beyond)
        assert beyond.sum() > 0.5 * causal.sum()  # most keys are beyond these short spans: the check is not vacuous
        assert layer.probs[beyond].max() < 1e-6
        within = (d < sigma - 1) & (d >= 0)
        torch.testing.assert_close((layer.probs * within).sum(-1), torch.ones_like(layer.span), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", HARD_SPAN)
@pytest.mark.parametrize("short", [False, True])
def test_hard_window_span_gets_gradients(variant, short):
    model = small_span_model(variant) if short else model_for(variant, noise=0.05)
    model.train()
    _, loss = model(tokens(2, L), tokens(2, L, seed=1))
    loss.backward()
    for block in model.transformer.h:
        params = [block.attn.span.proj.weight, block.attn.span.proj.bias] if variant == "hard_window" \
            else [block.attn.span.a]
        for p in params:
            assert p.grad is not None and torch.isfinite(p.grad).all()
            assert p.grad.abs().max() > 1e-6


# ----------------------------------------------------------------------------- structure statistics

@pytest.mark.parametrize("variant", VARIANTS)
def test_capture_stats_are_the_weighted_moments(variant):
    model = model_for(variant)
    T = 24  # < L: the model's positions are in units of L, capture's in tokens
    cap = tinygpt.capture(model, tokens(2, T))
    j = torch.arange(T, dtype=torch.float64)
    for layer in cap.layers:
        p, s = layer.probs.double(), layer.scores.double()
        mean_key = p @ j  # (B, H, T)
        expected = {"mean_distance": j - mean_key,
                    "std_distance": torch.sqrt((p * (j - mean_key.unsqueeze(-1)) ** 2).sum(-1)),
                    "mean_logit": (p * s).sum(-1)}
        for name, value in expected.items():
            torch.testing.assert_close(layer.stats[name].double(), value, atol=ATOL, rtol=0, msg=name)
        assert layer.stats["mean_distance"][..., 0].abs().max() == 0  # the first token can only see itself


def random_offsets(kind, B, H, T, g):
    span = 1 + 30 * torch.rand(B, H, T, generator=g)
    d = V.distances(T, "cpu")
    return {"none": None,
            "dense": torch.randn(B, H, T, T, generator=g),
            "soft": V.soft_window_offset(span, d),
            "ramp": V.ramp_offset(span, d),
            "alibi": V.alibi_offset(H, d),
            "iota": torch.randn(B, 1, 1, T, generator=g)}[kind]


@pytest.mark.parametrize("kind", ["none", "dense", "soft", "ramp", "alibi", "iota"])
def test_fused_structure_equals_explicit(kind):
    g = torch.Generator().manual_seed(0)
    B, H, T, D, block_size = 2, 3, 40, 8, 48  # T < L: positions are u = j / L, not j / T
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    offset = random_offsets(kind, B, H, T, g)
    y_e, st_e, s, p = attend_explicit(q, k, v, offset, block_size=block_size)
    y_f, st_f = attend_fused(q, k, v, offset, stats="all", block_size=block_size)
    # the explicit path against the definitions (variants.md), in float64
    u = torch.arange(T, dtype=torch.float64) / block_size
    p, s = p.double(), s.double()
    mu = p @ u
    brute = {"rel": mu - u, "sd": torch.sqrt((p * (u - mu.unsqueeze(-1)) ** 2).sum(-1) + V.SD_EPS),
             "mean_logit": (p * s).sum(-1)}
    for name, value in brute.items():
        torch.testing.assert_close(st_e[name].double(), value, atol=ATOL, rtol=0, msg=name)
    torch.testing.assert_close(y_f, y_e, atol=ATOL, rtol=0)
    for name in ("rel", "mean_logit"):
        torch.testing.assert_close(st_f[name], st_e[name], atol=ATOL, rtol=0, msg=name)
    torch.testing.assert_close(st_f["sd"] ** 2, st_e["sd"] ** 2, atol=ATOL, rtol=0)
    # The fused path gets the variance as E[u²] − μ², whose rounding (~1e-7) the sqrt turns into ~3e-4
    # where the spread is near zero (early rows, peaked heads); away from zero sd's error is the
    # variance's divided by 2·sd, so compare sd itself only where sd > 0.05, to 1e-4.
    wide = st_e["sd"] > 0.05
    assert wide.float().mean() > 0.3
    torch.testing.assert_close(st_f["sd"][wide], st_e["sd"][wide], atol=1e-4, rtol=0)
    # the cheaper modes give the same numbers
    y_p, st_p = attend_fused(q, k, v, offset, stats="positions", block_size=block_size)
    assert set(st_p) == {"rel", "sd"}
    torch.testing.assert_close(st_p["rel"], st_e["rel"], atol=ATOL, rtol=0)
    y_n, st_n = attend_fused(q, k, v, offset, block_size=block_size)
    assert st_n is None
    torch.testing.assert_close(y_n, y_e, atol=ATOL, rtol=0)
    torch.testing.assert_close(y_p, y_e, atol=ATOL, rtol=0)


@pytest.mark.parametrize("stats", ["positions", "all"])
def test_fused_structure_runs_on_the_flash_kernel(stats):
    """The structure channels must not push SDPA onto its T×T math fallback (2-3× slower on CPU)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, generator=g, requires_grad=True) for _ in range(3))
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises if flash cannot take these inputs
        y, st = attend_fused(q, k, v, stats=stats, block_size=16)
        (y.sum() + sum(t.sum() for t in st.values())).backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("stats", ["positions", "all"])
def test_dense_structure_equals_explicit(stats):
    """The dense structure path (hand-written backward) gives the explicit path's y, structure and gradients."""
    g = torch.Generator().manual_seed(0)
    B, H, T, D, block_size = 2, 3, 40, 8, 48
    q, k, v, w = (torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(4))
    names = ["rel", "sd"] + (["mean_logit"] if stats == "all" else [])
    ws = {n: torch.randn(B, H, T, generator=g, dtype=torch.float64) for n in names}
    results = []
    for fn in (lambda *a: attend_explicit(*a, block_size=block_size)[:2],
               lambda *a: attend_dense_structure(*a, stats=stats, block_size=block_size)):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        y, st = fn(*leaves)
        assert set(names) <= set(st)
        ((y * w).sum() + sum((st[n] * ws[n]).sum() for n in names)).backward()
        results.append([y] + [st[n] for n in names] + [t.grad for t in leaves])
    for name, a, b in zip(["y"] + names + ["q", "k", "v"], *results):
        assert b.abs().max() > 1e-2, name
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=name)


def test_structure_gate_training_path_is_dense_and_equals_explicit(monkeypatch):
    """On CPU the structure gate trains on the dense path; it gives capture's loss and every gradient."""
    calls = []
    monkeypatch.setattr(tinygpt.dispatch, "attend_dense_structure",
                        lambda *a, **kw: calls.append(kw["stats"]) or attend_dense_structure(*a, **kw))
    model = model_for("structure_gate").train()  # dropout 0
    idx, targets = tokens(2, L), tokens(2, L, seed=1)
    fused = loss_and_grads(model, idx, targets, explicit=False)
    assert calls == ["all"] * len(model.transformer.h)
    explicit = loss_and_grads(model, idx, targets, explicit=True)
    torch.testing.assert_close(fused[1], explicit[1], atol=ATOL, rtol=0)
    for name, g in explicit[2].items():
        torch.testing.assert_close(fused[2][name], g, atol=1e-7, rtol=1e-4, msg=name)
    assert explicit[2]["transformer.h.0.attn.gate.ln_m.weight"].abs().max() > 1e-4  # Σ p s is trained

# ----------------------------------------------------------------------------- block-sparse hard window

def mixed_spans(B, H, T, g):
    """Per head: a few tokens, tens of tokens, at least T, anything; per token random within that range.

    σ ≥ 1.5: as σ → 1 the only key in the window (d = 0) gets a ramp r → 0, and the ε-sized weights that
    the dense ramp leaves on the keys beyond the span (and FlexAttention drops) stop being negligible;
    test_flex_window_below_two_tokens covers that regime.
    """
    lo = torch.tensor([1.5, 8.0, float(T), 1.5])[:H].view(1, H, 1)
    hi = torch.tensor([8.0, 100.0, 2.0 * T, 3.0 * T])[:H].view(1, H, 1)
    return lo + (hi - lo) * torch.rand(B, H, T, generator=g) + 1e-3


def dense_window(q, k, v, span):
    T = q.size(-2)
    return attend_fused(q, k, v, V.ramp_offset(span, V.distances(T, q.device)), block_size=T)[0]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("T", [384, 200])
def test_flex_window_equals_dense(T):
    g = torch.Generator().manual_seed(0)
    B, H, D = 2, 4, 16
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    span = mixed_spans(B, H, T, g)
    y_flex = attend_flex_window(q, k, v, span)
    # the dense ramp leaves ε-sized weights beyond the span where FlexAttention leaves exact zeros
    torch.testing.assert_close(y_flex, dense_window(q, k, v, span), atol=ATOL, rtol=0)
    if T > 2 * 128:  # three query blocks: the short-span head skips key block 0 for query block 2
        assert skipped_fraction(span, T) > 0


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_window_below_two_tokens():
    """σ < 2: only the key d = 0 is within the span, so each query copies its own value, however small r is."""
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 1, 2, 130, 8
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    span = 1 + 1e-3 + 0.99 * torch.rand(B, H, T, generator=g)
    torch.testing.assert_close(attend_flex_window(q, k, v, span), v, atol=1e-6, rtol=0)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("device", DEVICES)
def test_flex_window_gradients_equal_dense(device, monkeypatch):
    if device == "cpu":  # eager FlexAttention's own backward (see test_flex_window_with_dropout_equals_dense)
        import torch.nn.attention.flex_attention as flex
        monkeypatch.setattr(flex, "_validate_device", lambda *a: None)
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 1, 4, 256, 16
    q, k, v = (torch.randn(B, H, T, D, generator=g).to(device) for _ in range(3))
    span = mixed_spans(B, H, T, g).to(device)
    w = torch.randn(B, H, T, D, generator=g).to(device)

    def grads(fn):
        qq, ss = q.clone().requires_grad_(), span.clone().requires_grad_()
        (fn(qq, k, v, ss) * w).sum().backward()
        return qq.grad, ss.grad

    flex = grads(attend_flex_window)
    dense = grads(dense_window)
    for name, a, b in zip(("q", "span"), flex, dense):
        assert b.abs().max() > 1e-3
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0, msg=name)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_window_with_dropout_equals_dense(monkeypatch):
    """Two FlexAttention passes give SDPA's attention dropout (weights p·m/(1 − p), not renormalised) with the
    same mask m: output and gradients of q, k, v and σ, float64. Eager FlexAttention is a dense reference
    implementation with a backward of its own; torch refuses it on CPU only because its compiled kernels
    have none, so the device check is lifted here. Rows whose every key is dropped are included (σ < 2)."""
    import torch.nn.attention.flex_attention as flex
    monkeypatch.setattr(flex, "_validate_device", lambda *a: None)
    g = torch.Generator().manual_seed(0)
    B, H, T, D, p = 2, 4, 96, 8, 0.3
    q, k, v, w = (torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(4))
    span = mixed_spans(B, H, T, g).double()
    span[:, 0, :8] = 1.2  # only the key d = 0 in the window: dropped with probability p
    torch.manual_seed(5)
    keep = torch.empty(B, H, T, T, dtype=torch.bool).bernoulli_(1 - p)  # the mask attend_flex_window draws next
    assert (~keep[:, 0, :8].diagonal(dim1=-2, dim2=-1)).any()

    def dense(q, k, v, span):
        logits = q @ k.transpose(-2, -1) / math.sqrt(D) + V.ramp_offset(span, V.distances(T, "cpu").double())
        return (causal_softmax(logits) * keep / (1 - p)) @ v

    results = []
    for fn in (lambda *a: attend_flex_window(*a, dropout_p=p), dense):
        torch.manual_seed(5)
        leaves = [t.clone().requires_grad_() for t in (q, k, v, span)]
        y = fn(*leaves)
        (y * w).sum().backward()
        results.append([y] + [t.grad for t in leaves])
    for name, a, b in zip(("y", "q", "k", "v", "span"), *results):
        assert torch.isfinite(a).all() and b.abs().max() > 1e-3, name
        # the dense ramp leaves ε-sized weights beyond the span where FlexAttention leaves exact zeros
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    # not vacuous: the dropout changed the output
    assert (results[0][0] - attend_flex_window(q, k, v, span)).abs().max() > 0.1


@pytest.mark.parametrize("dense_window", [dense_window, attend_hard_window], ids=["autograd", "by_hand"])
def test_dense_window_gradients(dense_window):
    """The dense hard window's gradients w.r.t. q and σ equal those of variants.md's formula (float64)."""
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 1, 4, 64, 8
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    span = mixed_spans(B, H, T, g)
    w = torch.randn(B, H, T, D, generator=g)

    def formula(q, k, v, span):
        s = q @ k.transpose(-2, -1) / math.sqrt(D)
        d = dist(T)
        p0 = causal_softmax(s)
        r = 1 - torch.exp(-torch.relu(1 - (d + 1) / span.unsqueeze(-1))) + EPS
        p = ((p0 + EPS) * r).masked_fill(d < 0, 0.0)
        return (p / p.sum(-1, keepdim=True)) @ v

    results = []
    for fn, dtype in ((dense_window, torch.float32), (formula, torch.float64)):
        qq, ss = q.to(dtype).clone().requires_grad_(), span.to(dtype).clone().requires_grad_()
        y = fn(qq, k.to(dtype), v.to(dtype), ss)
        (y * w.to(dtype)).sum().backward()
        results.append((y, qq.grad, ss.grad))
    for name, a, b in zip(("y", "q", "span"), *results):
        assert b.abs().max() > 1e-3
        torch.testing.assert_close(a.double(), b, atol=1e-4 if name != "y" else ATOL, rtol=0, msg=name)


@pytest.mark.parametrize("per_head", [False, True])
def test_hard_window_by_hand_equals_autograd(per_head):
    """The hand-written backward is autograd's through the dense offset, to float64 rounding, σ included."""
    g = torch.Generator().manual_seed(1)
    B, H, T, D = 2, 4, 64, 8
    q, k, v, w = (torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(4))
    span = (torch.tensor([2.5, 5.0, 9.0, 100.0], dtype=torch.float64).view(1, H, 1) if per_head
            else mixed_spans(B, H, T, g).double())
    results = []
    for fn in (dense_window, attend_hard_window):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, span)]
        (fn(*leaves) * w).sum().backward()
        results.append([fn(*leaves)] + [t.grad for t in leaves])
    for name, a, b in zip(("y", "q", "k", "v", "span"), *results):
        assert a.shape == b.shape and b.abs().max() > 1e-3, name
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=name)


def test_hard_window_by_hand_keeps_epsilon_in_float32():
    """σ → 1: every key's ramp is ε, so the row must stay finite (1 + ε rounds to 1 in float32)."""
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 4, 16, 8, generator=g) for _ in range(3))
    span = torch.tensor([1.0, 1.0 + 1e-7, 3.0, 40.0]).view(1, 4, 1)
    y = attend_hard_window(q, k, v, span)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, dense_window(q, k, v, span), atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", HARD_SPAN)
def test_hard_window_training_path_equals_explicit(variant):
    """The model's training path (the hand-written hard window on CPU) gives capture's explicit path's
    logits, loss and every parameter's gradient."""
    model = small_span_model(variant).train()
    idx, targets = tokens(2, L), tokens(2, L, seed=1)
    fused = loss_and_grads(model, idx, targets, explicit=False)
    explicit = loss_and_grads(model, idx, targets, explicit=True)
    torch.testing.assert_close(fused[0], explicit[0], atol=ATOL, rtol=0)
    for name, g in explicit[2].items():
        torch.testing.assert_close(fused[2][name], g, atol=1e-6, rtol=1e-4, msg=name)
        if ".span." in name:
            assert g.abs().max() > 1e-4, name  # the spans are trained: not vacuous


def needed_blocks(span, T, block):
    """Brute force: (B, H, NQ, NK) True where some query of the block has a key in the block with ramp > ε."""
    B, H, _ = span.shape
    d = dist(T)
    z = torch.relu(1 - (d + 1) / span.double().unsqueeze(-1))  # (B, H, T, T)
    reach = ((1 - torch.exp(-z)) > 0) & (d >= 0)  # ramp − ε > 0, causal
    n = -(-T // block)
    reach = F.pad(reach, (0, n * block - T, 0, n * block - T))
    return reach.view(B, H, n, block, n, block).any(-1).any(-2)


@pytest.mark.parametrize("T", [1024, 300])
def test_window_block_mask_keeps_every_reachable_block(T):
    g = torch.Generator().manual_seed(0)
    B, H, block = 2, 4, 128
    span = torch.exp(torch.rand(B, H, T, generator=g) * math.log(2 * T)) + 1e-3  # 1 to 2T, log-uniform
    span[:, 0] = 1 + 7 * torch.rand(B, T, generator=g)  # one head with short spans everywhere
    kv_num, kv_idx = window_block_mask(span, T, block)
    n = -(-T // block)
    assert kv_num.shape == (B, H, n) and kv_idx.shape == (B, H, n, n)
    kept = torch.zeros(B, H, n, n, dtype=torch.bool)
    for b in range(B):
        for h in range(H):
            for qb in range(n):
                idx = kv_idx[b, h, qb, : kv_num[b, h, qb]].long()
                assert len(set(idx.tolist())) == len(idx) and idx.max() <= qb  # no repeats, none above diagonal
                kept[b, h, qb, idx] = True
    need = needed_blocks(span, T, block)
    assert not (need & ~kept).any(), "a dropped key block holds a key inside some query's span"
    assert torch.equal(kept, need)  # and it drops every block that holds none
    assert (~kept).sum() > 0


def test_skipped_fraction():
    T, block = 1024, 128
    g = torch.Generator().manual_seed(0)
    assert skipped_fraction(T + 100 * torch.rand(2, 4, T, generator=g), T, block) == 0.0
    short = 1 + 7 * torch.rand(2, 4, T, generator=g)  # all spans ≤ 8
    frac = skipped_fraction(short, T, block)
    n = T // block
    expected = 1 - needed_blocks(short, T, block).sum(-1).sum(-1).double().mean().item() / (n * (n + 1) / 2)
    assert frac > 0.5
    assert frac == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("variant", VARIANTS)
def test_adam_steps_lower_the_loss(variant):
    torch.manual_seed(0)
    model = GPT(config(variant, dropout=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = tokens(4, L), tokens(4, L, seed=1)
    model.train()
    first = None
    for _ in range(8):
        _, loss = model(x, y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    model.eval()
    with torch.no_grad():
        assert model(x, y)[1].item() < first - 0.2


@pytest.fixture(scope="module")
def data_env(tmp_path_factory):
    """Raw text from $TINYGPT_DATA_SOURCE (or ../shared/data), prepared into a temporary folder."""
    source = Path(os.environ.get("TINYGPT_DATA_SOURCE") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (source / "SHA256SUMS").is_file():
        pytest.skip(f"no raw text at {source}: set TINYGPT_DATA_SOURCE")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGPT_DATA_SOURCE", str(source))
        mp.setenv("TINYGPT_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.mark.parametrize("variant", VARIANTS)
def test_trains_and_reloads(variant, data_env, tmp_path):
    from tinygpt.data import load_dataset
    from tinygpt.presets import TrainConfig, make_config
    from tinygpt.train import estimate_loss, train

    history = train(make_config("smoke", variant=variant, max_iters=20, eval_interval=10), tmp_path,
                    progress=False, log=lambda *a: None)
    vals = [e["val_loss"] for e in history["evals"]]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.1
    a, b = tinygpt.load(tmp_path / "best.pt"), tinygpt.load(tmp_path / "best.pt")
    assert a.config.variant == variant and not a.training
    idx = tokens(2, 32)
    with torch.no_grad():
        assert torch.equal(a(idx)[0], b(idx)[0])
    # the reloaded model is the one that was evaluated: it reproduces the recorded best val loss
    ckpt = torch.load(tmp_path / "best.pt", weights_only=True)
    assert ckpt["best_val_loss"] == min(vals)
    cfg = TrainConfig.from_dict(ckpt["config"])
    losses = estimate_loss(a, load_dataset(cfg.dataset), cfg, ckpt["iter_num"], "cpu", nullcontext())
    assert losses["val"] == pytest.approx(ckpt["best_val_loss"], abs=1e-5)


# ----------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("variant", VARIANTS)
def test_block_size_1_runs_or_is_refused(variant):
    """A model whose attention needs distances i − j refuses block_size 1 by name; every other one runs at T = 1."""
    try:
        model = GPT(config(variant, block_size=1)).train()
    except ValueError as e:
        assert variant in ("soft_window", "hard_window", "learned_span", "alibi") and "block_size" in str(e)
        config(variant, block_size=2)
        return
    logits, loss = model(tokens(2, 1), tokens(2, 1, seed=1))
    loss.backward()
    assert logits.shape == (2, 1, 65) and torch.isfinite(loss)


@pytest.mark.parametrize("span_init", [0.0, -0.5, float("nan"), float("inf")])
def test_span_init_must_be_positive(span_init):
    with pytest.raises(ValueError, match="span_init"):
        config("hard_window", span_init=span_init)


def test_every_variant_has_its_pieces():
    assert list(V.PIECES) == VARIANTS


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant") as e:
        config("hard-window")
    assert all(name in str(e.value) for name in VARIANTS)


def test_key_importance_starts_at_the_baseline():
    """Zero-initialised importance: the baseline's weights give the baseline's logits."""
    torch.manual_seed(0)
    base = GPT(config("baseline"))
    torch.manual_seed(1)
    model = GPT(config("key_importance"))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected
    assert missing and all("key_importance.proj" in k for k in missing)
    assert all(torch.count_nonzero(model.get_parameter(k)) == 0 for k in missing)
    idx = tokens(2, L)
    with torch.no_grad():
        # ι = 0 goes through the masked kernel rather than the is_causal one: equal up to rounding
        torch.testing.assert_close(model(idx)[0], base(idx)[0], atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- offsets as q/k channels

CHANNEL_VARIANTS = ("soft_window", "alibi", "key_importance")
T_LONG = 1024


def loss_and_grads(model, idx, targets, explicit):
    """Logits, loss and every parameter's gradient, on the fused path or the explicit (capture's) one."""
    for block in model.transformer.h:
        block.attn.record = {} if explicit else None  # a dict: the explicit path runs and fills it
    model.zero_grad(set_to_none=True)
    try:
        logits, loss = model(idx, targets)
        loss.backward()
    finally:
        for block in model.transformer.h:
            block.attn.record = None
    return logits.detach(), loss.detach(), {n: p.grad for n, p in model.named_parameters()}


def offset_params(model):
    """The parameters that reach the logits only through the offset (and so only through the channels)."""
    return {n: p for n, p in model.named_parameters() if ".span." in n or "key_importance.proj.weight" in n}


@pytest.mark.parametrize("variant, per_head", [(v, False) for v in CHANNEL_VARIANTS] + [("key_importance", True)])
def test_offset_channels_equal_explicit(variant, per_head, monkeypatch):
    """The fused path's q/k channels give the explicit path's logits and every parameter's gradient (fp32)."""
    monkeypatch.setattr(tinygpt.dispatch, "ALIBI_MASK_MAX_T", 0)  # alibi's channels even at this short context
    model = model_for(variant, key_importance_per_head=per_head).train()  # dropout 0: both paths deterministic
    idx, targets = tokens(2, L), tokens(2, L, seed=1)
    fused = loss_and_grads(model, idx, targets, explicit=False)
    explicit = loss_and_grads(model, idx, targets, explicit=True)
    torch.testing.assert_close(fused[0], explicit[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(fused[1], explicit[1], atol=ATOL, rtol=0)
    for name, g in explicit[2].items():
        assert (g is None) == (fused[2][name] is None), name
        # atol: ι's bias moves every key of a row alike, so its exact gradient is 0 (both paths: rounding)
        torch.testing.assert_close(fused[2][name], g, atol=1e-7, rtol=1e-4, msg=name)
    for name in offset_params(model):
        assert explicit[2][name].abs().max() > 1e-4, name  # the offset's parameters are trained: not vacuous
    # not vacuous: without its offset the model's logits are far from these
    for block in model.transformer.h:
        block.attn.attend = dataclasses.replace(block.attn.attend, offset_kind=None)
    with torch.no_grad():
        assert (model(idx)[0] - fused[0]).abs().max() > 1e-2


@pytest.mark.parametrize("variant", CHANNEL_VARIANTS)
@pytest.mark.parametrize("alibi_mask_max_t", [0, L])
def test_offset_channels_run_on_the_flash_kernel(variant, alibi_mask_max_t, monkeypatch):
    """No T×T tensor with a gradient: with the math fallback disabled the training step still runs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    monkeypatch.setattr(tinygpt.dispatch, "ALIBI_MASK_MAX_T", alibi_mask_max_t)  # alibi: channels, then its mask
    model = model_for(variant).train()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises if SDPA would need its math path
        _, loss = model(tokens(2, L), tokens(2, L, seed=1))
        loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("T", [64, 256, 257, 1024, 4096])
def test_position_channels_are_exact_in_bfloat16(T):
    """kc @ w = j − c for every key j, with each channel value an integer that bf16 holds exactly."""
    kc, w = V.position_channels(T, "cpu")
    assert kc.shape == (T, 1 if T <= 256 else 2)
    assert torch.equal(kc.to(torch.bfloat16).float(), kc)
    j = (kc.double() @ w.double())
    c = j[0]
    assert torch.equal(j - c, torch.arange(T, dtype=torch.float64))
    assert j.abs().max() <= T / 2 + 256  # centred: the rounding of the logits grows with |kc|
    # a bf16 query weight x: 256·bf16(x) is bf16(256·x), so the slope is the same on both channels
    x = torch.tensor(1 / 3.7)
    qw = (x * w).to(torch.bfloat16).double()
    torch.testing.assert_close(qw / qw[-1], w.double(), atol=0, rtol=0)


@pytest.mark.parametrize("variant", CHANNEL_VARIANTS)
def test_offset_channels_exact_at_block_size_1024(variant):
    """L = T = 1024: keys beyond 256 (two position channels), slopes up to 1/σ ≈ 0.85.

    In float64 the fused path is the explicit one: the channel trick is exact. In float32 its error is
    the rounding of logits as large as |j − c|/σ (≈ 440 here, against ≈ 1 on the explicit path), and the
    same cancellation in σ's gradient Σ_j g_ij·(j − c), where Σ_j g_ij = 0: a few ulps of 440.
    """
    T = T_LONG
    assert T > tinygpt.dispatch.ALIBI_MASK_MAX_T  # alibi runs on its channels here
    model = model_for(variant, n_layer=1, block_size=T).train()
    if variant == "soft_window":  # σ from 1.2 tokens (a = −8) to several T: the steepest slopes are the hardest
        with torch.no_grad():
            model.transformer.h[0].attn.span.proj.bias.copy_(torch.tensor([-8.0, -4.0, 0.0, 1.0]))
    idx, targets = tokens(1, T), tokens(1, T, seed=1)
    ref = loss_and_grads(model.double(), idx, targets, explicit=True)
    gmax = max(g.abs().max().item() for g in ref[2].values())
    exact = loss_and_grads(model, idx, targets, explicit=False)  # fused, float64
    torch.testing.assert_close(exact[0], ref[0], atol=1e-10, rtol=0)
    for name, g in ref[2].items():
        torch.testing.assert_close(exact[2][name], g, atol=1e-10 * gmax, rtol=1e-8, msg=name)
    f32 = loss_and_grads(model.float(), idx, targets, explicit=False)
    torch.testing.assert_close(f32[0].double(), ref[0], atol=3e-4, rtol=0)
    for name, g in ref[2].items():  # measured: 2e-3 of the gradient's scale for σ's Linear, 1e-5 elsewhere
        atol = 1e-2 * g.abs().max().item() + 1e-5 * gmax
        torch.testing.assert_close(f32[2][name].double(), g, atol=atol, rtol=0, msg=name)
    for name in offset_params(model):
        assert ref[2][name].abs().max() > 1e-4 * gmax, name
