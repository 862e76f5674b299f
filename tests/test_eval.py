"""Evaluation in a few stacked forward passes: the same batches, the same losses as one pass per batch.

CUDA stacks them; CPU, where stacking measured no faster, keeps one pass per batch. Stacked on CPU the
losses are bit for bit the per-batch ones (checked for every variant at the cpu preset's shapes, with one
and two threads), so the choice is one of speed only; the committed cpu runs' numbers cannot move.
"""

import math
from contextlib import nullcontext

import pytest
import torch

import tinygpt
from tinygpt import GPT
from tinygpt.data import load_dataset
from tinygpt.presets import make_config
from tinygpt.train import batch_losses, estimate_loss, full_val_loss


def trained_looking(variant, preset="cpu", **overrides):
    """The preset's model, its weights moved off init (N(0, 0.05) added) so that every variant's pieces act."""
    torch.manual_seed(0)
    model = GPT(make_config(preset, variant=variant, **overrides).model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def count_forward_passes(monkeypatch, model):
    calls, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(a[0].shape) or forward(*a, **k))
    return calls


def one_pass_per_batch(model, xs, ys):
    with torch.no_grad():
        return torch.tensor([model(x, y)[1].item() for x, y in zip(xs, ys)])


# one thread (the book's runs) for every variant; two (`tinygpt train` on this 2-core machine) for two of them:
# on a loaded machine two threads take ten times as long
CASES = [(v, 1) for v in tinygpt.VARIANTS] + [("baseline", 2), ("hard_window", 2)]


@pytest.mark.parametrize("variant, threads", CASES)
def test_stacked_passes_are_bit_equal_on_cpu(variant, threads, monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = trained_looking(variant)
        g = torch.Generator().manual_seed(2)
        xs, ys = ([torch.randint(65, (12, 64), generator=g) for _ in range(20)] for _ in range(2))
        ref = one_pass_per_batch(model, xs, ys)
        with torch.no_grad():
            assert torch.equal(batch_losses(model, xs, ys, nullcontext(), "cpu"), ref)  # CPU: one batch a pass
            for batches, passes in ((20, 1), (7, 4)):  # stacked as on CUDA: 20 at once; 4 of 5 (20's divisor ≤ 7)
                monkeypatch.setattr(tinygpt.train, "EVAL_TOKENS", {"cpu": batches * 12 * 64})
                calls = count_forward_passes(monkeypatch, model)
                assert torch.equal(batch_losses(model, xs, ys, nullcontext(), "cpu"), ref)
                assert len(calls) == passes
    finally:
        torch.set_num_threads(n)
    assert ref.std() > 0  # the batches differ: a mix-up of their rows would show


@pytest.mark.parametrize("stacked", [False, True])
def test_estimate_and_whole_split_equal_one_pass_per_batch(data_dir, monkeypatch, stacked):
    """estimate_loss draws the batches nanoGPT's way (one generator, in order) and full_val_loss takes the
    split's windows in order: both equal the per-batch loop they replace, bit for bit, stacked (as on CUDA)
    or not (CPU)."""
    if stacked:
        monkeypatch.setattr(tinygpt.train, "EVAL_TOKENS", {"cpu": 1 << 16})
    cfg = make_config("smoke", variant="soft_window", eval_iters=5)
    data = load_dataset(cfg.dataset)
    model = trained_looking("soft_window", "smoke")
    est = estimate_loss(model, data, cfg, 7, "cpu", nullcontext())
    for split in ("train", "val"):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + 7 + (split == "val"))
        xs, ys = zip(*[data.get_batch(split, cfg.batch_size, 32, gen) for _ in range(cfg.eval_iters)])
        assert est[split] == one_pass_per_batch(model, xs, ys).mean().item()
    val = torch.from_numpy(data.tokens("val").astype("int64"))
    n, total = (len(val) - 1) // 32, 0.0
    x, y = val[: n * 32].view(n, 32), val[1: n * 32 + 1].view(n, 32)
    with torch.no_grad():
        for i in range(0, n, 64):
            total += model(x[i:i + 64], y[i:i + 64])[1].item() * len(x[i:i + 64])
    assert full_val_loss(model, data, 32) == total / n
    assert math.isfinite(total)
