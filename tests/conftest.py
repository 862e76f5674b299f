"""Shared fixtures: the raw text, a prepared data folder, and one torch thread for tiny tensors."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("TINYGPT_DATA_SOURCE") or ROOT.parent / "shared" / "data")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """shakespeare_char prepared once per module into a temporary TINYGPT_DATA_DIR, from the local raw text."""
    from tinygpt.data import prepare
    if not (SOURCE / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"no raw text at {SOURCE}")
    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGPT_DATA_SOURCE", str(SOURCE))
        mp.setenv("TINYGPT_DATA_DIR", str(root))
        prepare("shakespeare_char")
        yield root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread is several times faster under load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
