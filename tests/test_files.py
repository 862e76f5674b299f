"""tinygpt.files and tinygpt.signals: one atomic write for every file, Ctrl-C and SIGTERM safe, one file mode;
locks and the debris a killed process leaves (removed only where no live process holds it)."""

import ast
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygpt import files, signals
from tinygpt.files import CorruptFile, FolderBusy, WriteFailed, atomic_write, folder_lock, read_json, write_json

PACKAGE = Path(files.__file__).parent


def umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def test_every_writer_uses_the_one_atomic_helper():
    """No module but files.py makes its own temporary files or renames over a file; execute.py only renames
    the locked temporary files.temporary_beside gave it (papermill writes that file itself)."""
    own = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    f"{node.value.id}.{node.attr}" in ("tempfile.mkstemp", "tempfile.NamedTemporaryFile",
                                                       "os.replace", "os.rename"):
                own.append(f"{path.relative_to(PACKAGE)} {node.value.id}.{node.attr}")
    assert own == ["book/execute.py os.replace", "files.py tempfile.mkstemp", "files.py os.replace"], own


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_get_the_mode_an_ordinary_file_gets(tmp_path, umask):
    from tinygpt.checkpoint import save_checkpoint
    from tinygpt.rawdata import atomic_write as data_write
    old = os.umask(umask)
    try:
        (tmp_path / "plain").write_text("x")
        want = (tmp_path / "plain").stat().st_mode & 0o777
        assert want == umask_mode()
        write_json(tmp_path / "a.json", {"a": 1})
        save_checkpoint(tmp_path / "c.pt", {"x": 1})
        data_write(tmp_path / "d.bin", b"xy")
        for name in ("a.json", "c.pt", "d.bin"):
            assert (tmp_path / name).stat().st_mode & 0o777 == want, name
    finally:
        os.umask(old)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(path, {"a": object()})
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_disk_full_names_the_path_and_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_write(path, b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(WriteFailed) as e:
        atomic_write(path, b"new")
    assert str(e.value) == f"cannot write {path} (No space left on device): free some disk space; the previous " \
                           "ckpt.pt is intact"
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_read_only_folder(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    with pytest.raises(WriteFailed, match=r"cannot write .*x.json \(Read-only file system\): the file system is "
                                          r"read-only: choose a folder you can write to"):
        write_json(tmp_path / "x.json", {})


def test_corrupt_json_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "metrics.json").write_text('{"best_val_loss": 1.9')
    with pytest.raises(CorruptFile, match=r"metrics.json is corrupt \(not JSON: .*\); delete it, or its run folder "
                                          r"\(`tinygpt train --overwrite`"):
        read_json(tmp_path / "metrics.json")
    with pytest.raises(CorruptFile, match="do this"):
        read_json(tmp_path / "metrics.json", fix="do this")
    assert issubclass(CorruptFile, ValueError)  # callers that caught a JSONDecodeError still do


class _SignalWhilePickled:
    """Sends a signal to this process while json/torch serialise it: a Ctrl-C in the middle of a write."""

    def __init__(self, sig):
        self.sig = sig

    def __reduce__(self):
        os.kill(os.getpid(), self.sig)
        return int, (7,)


@pytest.mark.parametrize("sig, exc", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, signals.Terminated)])
def test_ctrl_c_and_sigterm_wait_for_the_write(tmp_path, sig, exc, ctrl_c_raises):
    import torch

    from tinygpt.checkpoint import save_checkpoint
    with signals.sigterm_raises(), pytest.raises(exc):
        save_checkpoint(tmp_path / "c.pt", {"x": _SignalWhilePickled(sig)})
    assert torch.load(tmp_path / "c.pt", weights_only=False) == {"x": 7}  # whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_interrupt_nests_and_delivers_once(tmp_path, ctrl_c_raises):
    hits = []
    with pytest.raises(KeyboardInterrupt):
        with signals.deferred_interrupt():
            write_json(tmp_path / "a.json", {"a": 1})  # an inner deferral leaves the signal to the outer
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            write_json(tmp_path / "b.json", {"b": 2})
            hits.append("block finished")
    assert hits == ["block finished"] and read_json(tmp_path / "b.json") == {"b": 2}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_raises_terminated_and_exit_codes():
    assert issubclass(signals.Terminated, KeyboardInterrupt)
    assert signals.exit_code(signals.Terminated()) == 143 and signals.exit_code(KeyboardInterrupt()) == 130
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or whatever an earlier test's library left (ray.init)
    with pytest.raises(signals.Terminated), signals.sigterm_raises():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_sigterm_does_not_cut_the_clean_up_short():
    """A pool's manager thread SIGTERMs the remaining workers when one exits: a worker already cleaning up
    after the first SIGTERM must finish (the book run's SIGTERM test once left a .running.ipynb so)."""
    before, steps = signal.getsignal(signal.SIGTERM), []
    with pytest.raises(signals.Terminated), signals.sigterm_raises():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            steps.append("cleaned up")
    assert steps == ["cleaned up"] and signal.getsignal(signal.SIGTERM) == before


def test_folder_lock_refuses_a_second_holder_and_removes_a_lock_only_folder(tmp_path):
    run = tmp_path / "a" / "b" / "run"
    with folder_lock(run):
        with pytest.raises(FolderBusy, match="is in use by another run"):
            with folder_lock(run):
                pass
        assert [p.name for p in run.iterdir()] == [".lock"]
    assert not (tmp_path / "a").exists()  # an early error leaves nothing: the parents it made go too
    with folder_lock(run):
        (run / "config.json").write_text("{}")
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.json"]  # a used folder keeps its lock
    mine = tmp_path / "mine"
    mine.mkdir()
    with folder_lock(mine):
        pass
    assert mine.is_dir() and not list(mine.iterdir())  # a folder the caller made stays (empty)


# what a writer killed mid-write leaves: a temporary it holds, and a lock-only run folder
HOLD = """
import sys, time
from pathlib import Path
from tinygpt.files import folder_lock, temporary_beside
with folder_lock(Path(sys.argv[1]) / "held"), temporary_beside(Path(sys.argv[1]) / "ckpt.pt") as (tmp, fd):
    print(tmp, flush=True)
    time.sleep(600)
"""


def test_debris_of_a_killed_process_goes_and_a_live_ones_stays(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        live = Path(p.stdout.readline().strip())
        assert live.name.startswith(".ckpt.pt.") and live.name.endswith(".tmp")
        later = time.time() + 1
        assert files.clean_debris(tmp_path, before=later) == []  # held by a live process: kept
        assert not files.remove_if_abandoned(tmp_path / "held", stop=tmp_path, before=later)
        assert live.exists() and (tmp_path / "held" / ".lock").exists()
    finally:
        p.kill()  # kill -9: no cleanup of its own
        p.wait()
    assert live.exists()
    fresh = tmp_path / ".other.json.abc.tmp"
    fresh.write_text("{}")  # a temporary newer than `before`: maybe being made right now, kept
    assert files.clean_debris(tmp_path, before=fresh.stat().st_mtime) == [live]
    assert fresh.exists()
    assert files.remove_if_abandoned(tmp_path / "held", stop=tmp_path, before=time.time() + 1)
    assert not (tmp_path / "held").exists() and tmp_path.exists()


def test_json_written_reads_back(tmp_path):
    write_json(tmp_path / "deep" / "x.json", {"a": [1, 2.5]})
    assert json.loads((tmp_path / "deep" / "x.json").read_text()) == {"a": [1, 2.5]}
