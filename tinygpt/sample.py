"""Generate text from a checkpoint (ours or nanoGPT's)."""

import torch

from .checkpoint import model_from_checkpoint, read_checkpoint
from .device import resolve_device


def vocabulary(ckpt):
    """itos from the checkpoint itself, or from the prepared data set it names (nanoGPT's)."""
    if "vocab" in ckpt:
        return list(ckpt["vocab"])
    from .data import load_dataset
    return load_dataset(ckpt.get("config", {}).get("dataset", "shakespeare_char")).itos


def sample(ckpt_path, prompt="\n", num_samples=1, max_new_tokens=500, temperature=0.8, top_k=200,
           seed=1337, device="auto", trusted=False, stream=None):
    """A list of num_samples strings, each the prompt and its continuation (see generate_text for stream)."""
    device = resolve_device(device)
    ckpt = read_checkpoint(ckpt_path, map_location=device, trusted=trusted)
    model = model_from_checkpoint(ckpt, ckpt_path).to(device).eval()
    return generate_text(model, vocabulary(ckpt), prompt, num_samples, max_new_tokens, temperature, top_k, seed,
                         stream=stream)


def generate_text(model, itos, prompt="\n", num_samples=1, max_new_tokens=500, temperature=0.8, top_k=200,
                  seed=1337, stream=None):
    """num_samples continuations of prompt; stream(chars), if given, receives each step's new characters
    (one per sample) as they are drawn, and the text is the same as without it."""
    stoi = {c: i for i, c in enumerate(itos)}
    unknown = sorted(set(prompt) - set(stoi))
    if unknown:
        raise ValueError(f"prompt has characters outside the vocabulary: {unknown!r}")
    if not prompt:
        raise ValueError("prompt must not be empty (use '\\n' to start from a new line)")
    device = next(model.parameters()).device
    idx = torch.tensor([[stoi[c] for c in prompt]] * num_samples, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    if stream is None:
        out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen)
        return ["".join(itos[i] for i in row) for row in out.tolist()]
    # one step at a time through the same generator draws the same tokens; only the context the model
    # sees (block_size tokens) stays on the device, so a huge max_new_tokens neither grows it nor waits
    rows, block = [list(prompt) for _ in range(num_samples)], model.config.block_size
    for _ in range(max_new_tokens):
        idx = model.generate(idx[:, -block:], 1, temperature=temperature, top_k=top_k, generator=gen)
        chars = [itos[i] for i in idx[:, -1].tolist()]
        stream(chars)
        for row, c in zip(rows, chars):
            row.append(c)
    return ["".join(row) for row in rows]
