"""Atomic files and checkpoints, in nanoGPT's layout so that either program's files load here.

A checkpoint is a dict with `model` (state dict), `model_args` (GPTConfig fields), `iter_num`,
`best_val_loss` and `config`; ours add the optimizer and RNG states needed to resume bit for bit.
"""

import fcntl
import json
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from .model import GPT, GPTConfig


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and what to do."""


class FolderBusy(ValueError):
    """Another process holds a run folder's lock."""


@contextmanager
def folder_lock(folder):
    """Hold folder/.lock (an fcntl lock, released when the process dies) or fail at once if another holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"{folder} is in use by another run (it holds {folder / '.lock'}); wait for it to "
                             "finish or choose another folder") from None
        try:
            yield folder
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


@contextmanager
def deferred_interrupt():
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it as it would have been.

    A KeyboardInterrupt raised inside torch.save's zip writer surfaces as a RuntimeError from its
    cleanup, and one between two files of an evaluation leaves them out of step; writes are short,
    so the interrupt waits for them. Only the main thread can install handlers; nested blocks defer to the outer.
    """
    previous = signal.getsignal(signal.SIGINT)
    if (previous is None or threading.current_thread() is not threading.main_thread()
            or getattr(previous, "_defers", False)):  # None: a handler not set from Python, which we cannot restore
        yield
        return
    caught = []

    def hold(signum, frame):
        caught.append(frame)
    hold._defers = True
    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


def _atomic(path, write):
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with deferred_interrupt():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; run folders are meant to be shared and read
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json(path, obj):
    _atomic(path, lambda f: f.write((json.dumps(obj, indent=1) + "\n").encode()))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_checkpoint(path, ckpt):
    _atomic(path, lambda f: torch.save(ckpt, f))


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
