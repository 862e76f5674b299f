"""Shared fixtures: the raw text, a prepared data folder, and one torch thread for tiny tensors."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("TINYGPT_DATA_SOURCE") or ROOT.parent / "shared" / "data").resolve()  # CI: relative


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


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C as in a terminal: a test run started in the background (`make test &`) inherits SIGINT ignored."""
    import signal
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


# Tests in files other engineers own that take a minute or more on this 2-core machine (measured under load):
# marked here so that `make check` (-m "not slow") stays within 3 minutes; `make test` runs them all.
# Every test that executes the book's own chapters (the smoke_book fixture, or papermill on notebooks/) is slow.
SLOW_ELSEWHERE = {
    "tests/test_notebooks.py::test_unknown_preset_fails_in_the_first_cells",  # 7 kernels, ~50 s
    "tests/test_notebooks.py::test_unknown_variant_fails_with_the_valid_names",
    "tests/test_study.py::test_losses_alone_suffice_where_no_model_is_read",  # trains a chapter's runs, ~65 s
    # Jupyter Book builds and a browser: 15-70 s each
    "tests/test_site.py::test_the_committed_book_as_a_reader_sees_it",
    "tests/test_site.py::test_screenshots_of_a_standin_book",
    "tests/test_site.py::test_the_committed_book_builds_offline_and_passes",
    "tests/test_site.py::test_a_built_standin_book_passes",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "smoke_book" in getattr(item, "fixturenames", ()) or item.nodeid.split("[")[0] in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def script():
    """A script of scripts/ loaded as a module: script("import_device_book").main([...])."""
    import importlib.util

    def load(name):
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load
