"""tinygpt.dispatch: which kernel each variant takes on CPU and on CUDA, and that CUDA's choices compute the
same numbers as CPU's where CPU can run them (the padding to 8 columns, alibi's channels at short contexts)."""

import math

import pytest
import torch

import tinygpt
from tinygpt import GPT
from tinygpt import variants as V
from tinygpt.attention import attend_flex_window, attend_fused
from tinygpt.dispatch import CUDA_ALIGN, Attend
from tinygpt.presets import make_config

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5  # float32: a few ulps of outputs of order 1


def attend_for(variant, preset):
    return Attend.from_config(make_config(preset, variant=variant).model)


# (preset, device, training) → kernel, for every variant. CPU: the choices the committed cpu-preset runs were
# trained with. CUDA: no T×T tensor with a gradient anywhere (flex for the hard windows, dropout or not).
EXPECTED = {
    "fused": {"baseline", "soft_window", "key_importance", "structure_mlp", "structure_embedding", "alibi",
              "output_gate"},
    "cpu": {"hard_window": "hard_window", "learned_span": "hard_window", "structure_gate": "dense_structure"},
    "gpu_cuda": {"hard_window": "flex", "learned_span": "flex", "structure_gate": "fused"},
    "gpu_cpu_training": {"hard_window": "fused", "learned_span": "fused", "structure_gate": "fused"},  # dropout 0.2
}


@pytest.mark.parametrize("variant", list(tinygpt.VARIANTS))
def test_kernel_choice(variant):
    cpu, gpu = attend_for(variant, "cpu"), attend_for(variant, "gpu")
    assert cpu.kernel(64, False, False) == EXPECTED["cpu"].get(variant, "fused")  # the cpu preset: no dropout
    assert gpu.kernel(256, True, True) == EXPECTED["gpu_cuda"].get(variant, "fused")
    assert gpu.kernel(256, True, False) == EXPECTED["gpu_cuda"].get(variant, "fused")
    assert gpu.kernel(256, False, True) == EXPECTED["gpu_cpu_training"].get(variant, "fused")
    if variant in EXPECTED["fused"]:
        assert cpu.kernel(64, False, False) == gpu.kernel(256, True, True) == "fused"


def qkv(B=2, H=3, T=40, D=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=dtype).requires_grad_() for _ in range(3)]


def channel_inputs(kind, B, H, T, g):
    """(channels, dense offset) of one rank-few offset with a gradient where it has one."""
    if kind == "soft":
        span = (1 + 30 * torch.rand(B, H, T, generator=g)).requires_grad_()
        return V.soft_window_channels(span), V.soft_window_offset(span, V.distances(T, "cpu")), span
    if kind == "iota":
        iota = torch.randn(B, 1, T, generator=g).requires_grad_()
        return V.key_importance_channels(iota), iota.unsqueeze(2), iota
    return V.alibi_channels(H, T, "cpu"), V.alibi_offset(H, V.distances(T, "cpu")), None


@pytest.mark.parametrize("kind", ["soft", "iota", "alibi"])
@pytest.mark.parametrize("stats", [None, "positions", "all"])
def test_padding_to_8_columns_changes_nothing(kind, stats):
    """CUDA's path pads the head (D + n channels, D + 2 or 2D + 2 value columns) with zero columns to a
    multiple of 8: the same outputs, structure and gradients as CPU's unpadded path and as the dense offset."""
    B, H, T, D = 2, 3, 40, 8
    results = []
    for align, dense in ((1, False), (CUDA_ALIGN, False), (1, True)):
        g = torch.Generator().manual_seed(1)
        channels, offset, leaf = channel_inputs(kind, B, H, T, g)
        q, k, v = qkv(B, H, T, D)
        y, st = attend_fused(q, k, v, offset if dense else None, channels=None if dense else channels, stats=stats,
                             block_size=48, align=align)
        w = torch.randn(y.shape, generator=g)
        loss = (y * w).sum() + sum((t * (i + 1)).sum() for i, t in enumerate((st or {}).values()))
        loss.backward()
        results.append([y] + list((st or {}).values()) + [t.grad for t in (q, k, v)]
                       + ([leaf.grad] if leaf is not None else []))
    unpadded, padded, dense = results
    for a, b, c in zip(unpadded, padded, dense):
        torch.testing.assert_close(b, a, atol=ATOL, rtol=0)
        torch.testing.assert_close(a, c, atol=1e-4, rtol=0)  # the channels against the dense offset


def test_padding_reaches_a_multiple_of_8():
    """Not vacuous: the padded call hands SDPA 16 columns where the unpadded one hands it 9."""
    widths = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        widths.append(q.size(-1))
        return real(q, k, v, **kw)

    q, k, v = qkv()
    channels = V.key_importance_channels(torch.randn(2, 1, 40))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        for align in (1, CUDA_ALIGN):
            attend_fused(q, k, v, channels=channels, block_size=40, align=align)
    assert widths == [9, 16]


def test_alibi_channels_at_short_contexts_equal_its_mask():
    """On CUDA alibi takes its q/k channels at every context (CPU: a mask up to 256 tokens); same numbers."""
    torch.manual_seed(0)
    model = GPT(make_config("smoke", variant="alibi", dropout=0.0).model).train()
    attend = model.transformer.h[0].attn.attend
    T, H = 32, model.config.n_head
    assert attend.channels(None, None, T, "cpu", cuda=False) is None
    qc, kc = attend.channels(None, None, T, "cpu", cuda=True)
    q, k, v = qkv(2, H, T, 16)
    y_mask, _ = attend_fused(q, k, v, attend.offset(None, None, T, "cpu"), block_size=T)
    y_chan, _ = attend_fused(q, k, v, channels=(qc, kc), block_size=T, align=CUDA_ALIGN)
    torch.testing.assert_close(y_chan, y_mask, atol=ATOL, rtol=0)


def test_compiled_flex_window_equals_dense(monkeypatch):
    """The hard window's FlexAttention compiled (inductor's CPU kernels; CUDA compiles it the same way) against
    the dense ramp, forward only: on CPU, compiled FlexAttention has no backward and no log-sum-exp, so the
    two-pass dropout path is checked eagerly (test_variants.py) and compiled on CUDA only (device_speed.sh)."""
    import torch.nn.attention.flex_attention as flex
    monkeypatch.setattr(flex, "flex_attention", torch.compile(flex.flex_attention, dynamic=False))
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 2, 4, 256, 16
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    span = 1.5 + 300 * torch.rand(B, H, T, generator=g)
    span[:, 0] = 1.5 + 6 * torch.rand(B, T, generator=g)  # one head of short spans: key blocks skipped
    with torch.no_grad():
        y = attend_flex_window(q, k, v, span)
    logits = q @ k.transpose(-2, -1) / math.sqrt(D) + V.ramp_offset(span, V.distances(T, "cpu"))
    dense = logits.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1) @ v
    # the dense ramp leaves ε-sized weights beyond the span where FlexAttention leaves exact zeros
    torch.testing.assert_close(y, dense, atol=ATOL, rtol=0)
