"""Checkpoints, in nanoGPT's layout so that either program's files load here.

A checkpoint is a dict with `model` (state dict), `model_args` (GPTConfig fields), `iter_num`,
`best_val_loss` and `config`; ours add the optimizer and RNG states needed to resume bit for bit.
The run folder's other files (atomic writes, JSON, the folder lock) come from files.py.
"""

import io
from pathlib import Path

import torch

from .files import FolderBusy, atomic_write, folder_lock, read_json, write_json  # noqa: F401 (the run folder's API)
from .model import GPT, GPTConfig
from .signals import deferred_interrupt


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and what to do."""


def _text_kind(path):
    """'a JSON file' or 'a text file' when the file reads as text (torch files are zip archives or pickles)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        text = head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not head or not all(c.isprintable() or c.isspace() for c in text):
        return None
    return "a JSON file" if text.lstrip()[:1] in ("{", "[") else "a text file"


def save_checkpoint(path, ckpt):
    # serialised in memory first: a failing file write inside torch's zip writer surfaces as an opaque
    # RuntimeError ("unexpected pos"); a plain write fails with the OSError (disk full) that says why
    with deferred_interrupt():  # a KeyboardInterrupt inside the zip writer would also end as a RuntimeError
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        atomic_write(path, buf.getbuffer())


def read_checkpoint(path, map_location="cpu", trusted=False):
    """torch.load with weights_only=True (no code runs) unless trusted; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train one (`tinygpt train --out DIR`) or fix the path")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as e:  # a truncated zip, random bytes, or a pickle with foreign classes
        if kind := _text_kind(path):  # a metrics.json or a log passed by mistake is not "corrupt"
            raise CheckpointError(f"{path} is not a checkpoint ({kind}; use a run's ckpt.pt or best.pt)") from e
        hint = ("it holds objects other than tensors and plain values; if you trust the file, "
                "pass trusted=True" if "Weights only load failed" in str(e)
                else "the file is corrupt or truncated; re-run training or pick another checkpoint")
        raise CheckpointError(f"cannot read checkpoint {path}: {hint} ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a tinygpt or nanoGPT checkpoint (it needs 'model' and "
                              f"'model_args'; found {keys})")
    return ckpt


def clean_state_dict(state):
    """nanoGPT compatibility: drop torch.compile's `_orig_mod.` prefix and the causal-mask buffers."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("_orig_mod.").removeprefix("module.")
        if k.endswith(".attn.bias") and v.dim() == 4:  # nanoGPT's tril mask when flash is unavailable
            continue
        out[k] = v
    return out


def model_from_checkpoint(ckpt, path="checkpoint"):
    known = GPTConfig.__dataclass_fields__
    args = {k: v for k, v in ckpt["model_args"].items() if k in known}
    try:
        model = GPT(GPTConfig(**args))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model_args do not make a valid GPTConfig: {e}") from e
    try:
        model.load_state_dict(clean_state_dict(ckpt["model"]))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model its model_args describe: {str(e)[:300]}") from e
    return model


def load(path, device="cpu", trusted=False):
    """Open a tinygpt or nanoGPT checkpoint and return the model in eval mode."""
    ckpt = read_checkpoint(path, map_location=device, trusted=trusted)
    return model_from_checkpoint(ckpt, path).to(device).eval()
