"""Prepared data sets: their checked token files and the batches drawn from them.

    data = load_dataset("shakespeare_char")    # checks the files, prepares them if missing (rawdata.py)
    x, y = data.get_batch("train", 12, 64, torch.Generator().manual_seed(0))   # (B, T) int64
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .rawdata import (
    DATASETS,
    HELD_OUT_WORKS,
    SPLITS,
    DataError,
    check_files,
    check_name,
    data_folder,
    is_prepared,
    prepare,
    read_meta,
)

__all__ = ["DATASETS", "HELD_OUT_WORKS", "DataError", "Dataset", "load_dataset", "prepare"]


class Dataset:
    """A prepared data set: its vocabulary, token counts and batches drawn from the .bin files."""

    def __init__(self, path: Path, meta: dict):
        self.name: str = meta["dataset"]
        self.path = path
        self.vocab_size: int = meta["vocab_size"]
        self.itos: list[str] = list(meta["chars"])
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}
        self.train_tokens: int = meta["train_tokens"]
        self.val_tokens: int = meta["val_tokens"]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, vocab_size={self.vocab_size}, train_tokens={self.train_tokens}, "
                f"val_tokens={self.val_tokens}, path='{self.path}')")

    def encode(self, s: str) -> list[int]:
        unknown = sorted(set(s) - self.stoi.keys())
        if unknown:
            raise DataError(f"characters {''.join(unknown)!r} are not in the {self.name} vocabulary "
                            f"({self.vocab_size} chars): remove or replace them")
        return [self.stoi[c] for c in s]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise DataError(f"token ids {bad[:5]} are outside the {self.name} vocabulary (0..{self.vocab_size - 1})")
        return "".join(self.itos[i] for i in ids)

    def tokens(self, split: str) -> np.memmap:
        """The split's token ids, memory-mapped afresh each call (a long-lived memmap leaks memory, nanoGPT)."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use 'train' or 'val'")
        return np.memmap(self.path / f"{split}.bin", dtype=np.uint16, mode="r")

    def _usable(self, split: str, fraction: float) -> int:
        """Tokens a split offers to batches: `fraction` keeps the first share of train; val is always whole."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use 'train' or 'val'")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise DataError(f"fraction must be a number in (0, 1] (got {fraction!r})")
        return int(self.train_tokens * fraction) if split == "train" else self.val_tokens

    def _check_block(self, split: str, block_size: int, fraction: float) -> int:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise DataError(f"block_size must be a positive int (got {block_size!r})")
        n = self._usable(split, fraction)
        if block_size + 1 > n:  # a row needs block_size inputs plus the next token as the last target
            part = f"the first {fraction:g} of train" if split == "train" and fraction < 1 else f"the {split} split"
            raise DataError(f"block_size {block_size} is too long for {self.name}: a row needs {block_size + 1} "
                            f"tokens and {part} has {n}; use block_size <= {n - 1}"
                            + (" or a larger fraction" if split == "train" and fraction < 1 else ""))
        return n

    def check_block_size(self, block_size: int, fraction: float = 1.0) -> None:
        """Raise DataError unless both splits (train cut to `fraction`) hold block_size + 1 tokens."""
        for split in SPLITS:
            self._check_block(split, block_size, fraction)

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator,
                  device: str | torch.device = "cpu", fraction: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y: (B, T) int64, y = x shifted left by one; offsets come from `generator` alone, so batches repeat."""
        n = self._check_block(split, block_size, fraction)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive int (got {batch_size!r})")
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise DataError("generator must be a CPU torch.Generator (batches move to `device` afterwards)")
        data = self.tokens(split)
        ix = torch.randint(n - block_size, (batch_size,), generator=generator)
        # read only the B rows (block_size + 1 tokens each) from the memmap, never the whole split
        rows = torch.from_numpy(np.stack([data[i:i + block_size + 1] for i in ix.tolist()]).astype(np.int64))
        x, y = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()  # (B, T) each
        if torch.device(device).type == "cuda":  # pinned memory lets the copy overlap with compute
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)


def load_dataset(dataset: str = "shakespeare_char", data_dir: str | os.PathLike | None = None,
                 prepare_if_missing: bool = True, verify: bool = True) -> Dataset:
    """Open a prepared data set; prepare it first (from $TINYGPT_DATA_SOURCE or a download) if it is missing.

    File sizes are always checked; `verify` also checks the sha256 in meta.json and that every id is
    below vocab_size (about 20 ms for the 10 MB of shakespeare_complete). Damaged files raise DataError,
    never a silent rebuild.
    """
    check_name(dataset)
    folder = data_folder(data_dir) / dataset
    if not is_prepared(folder) and prepare_if_missing:
        prepare(dataset, data_dir=data_dir)
    meta = read_meta(folder)
    check_files(folder, meta, full=verify)
    return Dataset(folder, meta)
