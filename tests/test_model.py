"""tinygpt.model and tinygpt.checkpoint: nanoGPT's architecture, its numbers, its checkpoints, generation."""

import math
import os
import random
import subprocess
import sys

import nanogpt_reference as ref
import pytest
import torch

import tinygpt
from tinygpt import GPT, GPTConfig
from tinygpt.checkpoint import CheckpointError

ATOL = 1e-5  # float32: a few ulps of logits of order 1–10 after a few layers


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides):
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=65, dropout=0.0, bias=False)
    return GPTConfig(**{**args, **overrides})


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(tiny(**overrides)).eval()


def tokens(B, T, seed=0, vocab=65):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def gpu_model():
    """nanoGPT's config/train_shakespeare_char.py model (built once: 10.6 M parameters)."""
    torch.manual_seed(1337)
    return GPT(GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65, dropout=0.2, bias=False))


# ----------------------------------------------------------------------------- shapes and sizes

@pytest.mark.parametrize("T", [1, 7, 16])
def test_logits_for_every_position_and_scalar_loss(T):
    model = tiny_model()
    idx = tokens(3, T)
    logits, loss = model(idx)
    assert logits.shape == (3, T, 65)
    assert loss is None
    logits2, loss = model(idx, tokens(3, T, seed=1))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.equal(logits, logits2)


def test_sequence_longer_than_block_size_raises():
    model = tiny_model()
    with pytest.raises(ValueError, match="block_size"):
        model(tokens(1, 17))


def test_parameter_count_matches_nanogpt(gpu_model):
    # nanoGPT prints "number of parameters: 10.65M" for this config; wpe (256 × 384) is not counted
    assert gpu_model.get_num_params() == 10_646_784
    assert round(gpu_model.get_num_params() / 1e6, 2) == 10.65
    assert gpu_model.get_num_params(non_embedding=False) == 10_646_784 + 256 * 384
    # the tied embedding is counted once
    assert sum(p.numel() for p in gpu_model.parameters()) == 10_646_784 + 256 * 384


def test_loss_at_init_is_near_uniform():
    model = tiny_model(n_embd=64)
    _, loss = model(tokens(4, 16), tokens(4, 16, seed=1))
    assert abs(loss.item() - math.log(65)) < 0.1


# ----------------------------------------------------------------------------- config validation

@pytest.mark.parametrize("field", ["block_size", "vocab_size", "n_layer", "n_head", "n_embd"])
@pytest.mark.parametrize("value", [0, -1])
def test_config_rejects_non_positive_sizes(field, value):
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})


def test_config_rejects_n_embd_not_divisible_by_n_head():
    with pytest.raises(ValueError, match="n_head"):
        tiny(n_embd=30, n_head=4)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_config_rejects_dropout_outside_unit_interval(dropout):
    with pytest.raises(ValueError, match="dropout"):
        tiny(dropout=dropout)


def test_config_accepts_edge_values():
    tiny(dropout=0.0)
    tiny(dropout=0.99)
    tiny(n_head=1, n_layer=1, block_size=1, vocab_size=1)


def test_unknown_variant_lists_valid_names():
    with pytest.raises(ValueError, match="variant") as e:
        tiny(variant="softwindow")
    for name in tinygpt.VARIANTS:
        assert name in str(e.value)


# ----------------------------------------------------------------------------- init

def test_weight_tying():
    model = tiny_model()
    assert model.transformer.wte.weight is model.lm_head.weight
    # and it stays tied through a state-dict round trip
    model2 = tiny_model(seed=1)
    model2.load_state_dict(model.state_dict())
    assert model2.transformer.wte.weight is model2.lm_head.weight
    assert torch.equal(model2.lm_head.weight, model.lm_head.weight)


def test_init_std(gpu_model):
    # A sample std over n normal draws has relative standard error 1/sqrt(2n) (0.2 % for the 147k
    # weights of an attention c_proj): allow five standard errors.
    resid_std = 0.02 / math.sqrt(2 * 6)
    for name, p in gpu_model.named_parameters():
        rel = 5 / math.sqrt(2 * p.numel())
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(resid_std, rel=rel), name
            assert abs(p.mean().item()) < 5 * resid_std / math.sqrt(p.numel()), name
        elif name.endswith(("c_attn.weight", "c_fc.weight", "wte.weight", "wpe.weight")):
            assert p.std().item() == pytest.approx(0.02, rel=rel), name
        elif name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            assert torch.equal(p, torch.ones_like(p)), name
    layer = gpu_model.transformer.h[0]
    assert layer.attn.c_proj.weight.std().item() < 0.5 * layer.attn.c_attn.weight.std().item()


def test_biases_start_at_zero():
    model = tiny_model(bias=True)
    biases = [(n, p) for n, p in model.named_parameters() if n.endswith(".bias")]
    assert biases
    for name, p in biases:
        assert torch.count_nonzero(p) == 0, name


# ----------------------------------------------------------------------------- nanoGPT checkpoints

@pytest.mark.parametrize("bias", [False, True])
def test_nanogpt_checkpoint_gives_nanogpt_logits(tmp_path, bias):
    ckpt = ref.checkpoint(n_layer=2, n_head=4, n_embd=32, block_size=16, bias=bias, dropout=0.2, seed=3)
    assert "variant" not in ckpt["model_args"]
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path)
    model = tinygpt.load(path)
    assert not model.training  # nanoGPT's dropout=0.2 must be off
    assert model.config.variant == "baseline" and model.config.bias is bias
    idx = tokens(2, 16, seed=5)
    expected = ref.forward(ckpt["model"], idx, n_layer=2, n_head=4)
    with torch.no_grad():
        logits, _ = model(idx)
        short, _ = model(idx[:, :9])
    # the weights are far from init: a model that ignored any of them would differ by O(1)
    assert expected.std() > 1.0
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(short, expected[:, :9], atol=ATOL, rtol=0)


def test_nanogpt_reference_is_sensitive_to_every_weight(tmp_path):
    """The comparison above can fail: change one weight of the file and the logits move."""
    ckpt = ref.checkpoint(bias=True, seed=3)
    ckpt["model"]["_orig_mod.transformer.h.1.mlp.c_fc.bias"][0] += 1.0
    torch.save(ckpt, tmp_path / "ckpt.pt")
    idx = tokens(2, 16, seed=5)
    with torch.no_grad():
        logits, _ = tinygpt.load(tmp_path / "ckpt.pt")(idx)
    assert (logits - ref.forward(ref.checkpoint(bias=True, seed=3)["model"], idx, 2, 4)).abs().max() > 1e-3
    torch.testing.assert_close(logits, ref.forward(ckpt["model"], idx, 2, 4), atol=ATOL, rtol=0)


def test_tinygpt_state_dict_has_nanogpt_names():
    model = tiny_model(bias=True)
    ours = set(model.state_dict())
    theirs = set(ref.random_state_dict(2, 4, 32, 16, 65, True, torch.Generator()))
    assert ours == {k for k in theirs if not k.endswith(".attn.bias")}


# ----------------------------------------------------------------------------- checkpoint errors

def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope" / "best.pt"
    with pytest.raises(FileNotFoundError) as e:
        tinygpt.load(path)
    assert str(path) in str(e.value) and "train" in str(e.value)


def test_random_bytes_are_a_checkpoint_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError, match="junk.pt"):
        tinygpt.load(path)


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save(ref.checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        tinygpt.load(path)


@pytest.mark.parametrize("obj", [{"model_args": {}}, {"model": {}}, {"state_dict": {}}, [1, 2, 3]])
def test_torch_file_that_is_not_a_checkpoint(tmp_path, obj):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="'model'"):
        tinygpt.load(path)


def test_checkpoint_with_invalid_model_args(tmp_path):
    ckpt = ref.checkpoint()
    ckpt["model_args"]["n_embd"] = 30  # not divisible by n_head=4
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="model_args"):
        tinygpt.load(tmp_path / "bad.pt")


def test_checkpoint_whose_weights_do_not_fit(tmp_path):
    ckpt = ref.checkpoint()
    ckpt["model_args"]["n_layer"] = 3  # the file has two blocks
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        tinygpt.load(tmp_path / "bad.pt")


class _Foreign:
    pass


def test_checkpoint_with_foreign_objects_needs_trust(tmp_path):
    ckpt = ref.checkpoint()
    ckpt["extra"] = _Foreign()
    torch.save(ckpt, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="trusted=True"):
        tinygpt.load(tmp_path / "foreign.pt")


# ----------------------------------------------------------------------------- generate

def test_generate_length_and_prefix():
    model = tiny_model()
    idx = tokens(2, 5)
    out = model.generate(idx, 20, generator=torch.Generator().manual_seed(0))  # crosses block_size=16
    assert out.shape == (2, 25) and out.dtype == idx.dtype
    assert torch.equal(out[:, :5], idx)
    assert out.min() >= 0 and out.max() < 65


def test_generate_top_k_1_is_greedy():
    model = tiny_model(seed=2)
    with torch.no_grad():  # move away from init so the greedy choice is not a near-tie
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    idx = tokens(2, 3)
    a = model.generate(idx, 18, top_k=1, generator=torch.Generator().manual_seed(0))
    b = model.generate(idx, 18, top_k=1, temperature=0.5, generator=torch.Generator().manual_seed(99))
    assert torch.equal(a, b)
    expected = idx
    with torch.no_grad():
        for _ in range(18):
            logits, _ = model(expected[:, -16:])
            expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(a, expected)


def test_generate_sampling_uses_the_generator():
    model = tiny_model()
    idx = tokens(1, 2)
    a = model.generate(idx, 30, generator=torch.Generator().manual_seed(0))
    b = model.generate(idx, 30, generator=torch.Generator().manual_seed(0))
    c = model.generate(idx, 30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_generate_rejects_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        tiny_model().generate(tokens(1, 2), 3, temperature=temperature)


def test_speed_reference_is_nanogpt():
    """scripts/bench_nanogpt.py times a transcription of nanoGPT: with the same weights it must give
    tinygpt's loss and gradients, so the speed comparison compares the same computation."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "bench_nanogpt", Path(__file__).parents[1] / "scripts" / "bench_nanogpt.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=65)
    torch.manual_seed(0)
    nano = bench.NanoGPT(cfg)
    ours = GPT(cfg)
    assert set(nano.state_dict()) == set(ours.state_dict())
    ours.load_state_dict(nano.state_dict())
    x, y = torch.randint(65, (3, 16)), torch.randint(65, (3, 16))
    ln, lo = nano(x, y)[1], ours(x, y)[1]
    ln.backward()
    lo.backward()
    torch.testing.assert_close(lo, ln)
    for (name, pn), po in zip(nano.named_parameters(), ours.parameters()):
        torch.testing.assert_close(po.grad, pn.grad, msg=name)


def test_flush_denormals_reaches_every_thread():
    """Denormals flushed in torch's whole OpenMP team, not only the calling thread; and back again."""
    from tinygpt.device import flush_denormals
    threads = torch.get_num_threads()
    flush_denormals(False)  # train() in an earlier test may have set it in this process
    x = torch.full((1 << 20,), 1e-40)  # large enough to be split across the threads
    assert (x != 0).all()
    try:
        torch.set_num_threads(2)
        n = flush_denormals()
        if n == 0:
            pytest.skip("this CPU cannot flush denormals")
        assert n == 2
        assert (x * 1.0 == 0).all()  # every chunk, whichever thread computed it
    finally:
        torch.set_num_threads(threads)
        flush_denormals(False)  # for the team this process computes with from here on
    assert (x * 1.0 != 0).all()


KEEP_FAULTS = """
import resource, sys, torch
from tinygpt.device import keep_freed_memory
assert keep_freed_memory() if sys.argv[1] == "1" else True
def step():  # fresh tensors, as a training step makes: 20 × 2 MiB, every page touched, then freed
    xs = [torch.ones(1 << 19) for _ in range(20)]
    del xs
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and getrusage's page faults")
def test_keep_freed_memory_stops_page_faults():
    """After keep_freed_memory, freed tensors' pages are reused: repeating a step faults (almost) no page in."""
    def faults(keep):
        out = subprocess.run([sys.executable, "-c", KEEP_FAULTS, keep], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return float(out.stdout.split()[-1])
    pages = 20 * (2 << 20) // 4096
    kept, default = faults("1"), faults("0")
    assert kept < 0.05 * pages, (kept, pages)
    assert default > 5 * kept, (default, kept)  # the test can tell: by default the pages fault in again
