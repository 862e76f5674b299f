"""Files that are always whole: atomic writes, run-folder locks, and the debris a killed process leaves.

    atomic_write(path, b"...")             # a temporary file beside `path`, synced, then renamed over it
    write_json(path, obj); read_json(path)  # read_json names the file and the fix when it is corrupt
    with folder_lock(run_dir): ...         # one process per run folder (flock: released when a process dies)
    clean_debris(folder)                   # temporary files no live process holds

Every temporary file is flock'ed by its writer for its whole life, so debris has one test: a
temporary file, or a folder holding nothing but its `.lock`, that no process holds a lock on and
that is older than `before` (default: this process's start). A live writer always holds its lock; a
killed one (kill -9, power loss) no longer does. New files get the mode an ordinary new file gets
(0666 less the umask), whichever way they were written.
"""

import errno
import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .signals import deferred_interrupt

PROCESS_START = time.time()  # debris must be older than this (imported as a command starts)
TEMP_SUFFIXES = (".tmp", ".running.ipynb")  # what temporary_beside makes: ".<name>.<random><suffix>"
LOCK = ".lock"


class WriteFailed(OSError):
    """A file could not be written (disk full, read-only, no permission); its previous version is intact."""

    def __str__(self):  # the message alone: it already names the file (OSError would add "[Errno 28]")
        return self.strerror

    @classmethod
    def of(cls, path, err):
        hint = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some of your disk quota",
                errno.EROFS: "the file system is read-only: choose a folder you can write to",
                errno.EACCES: "choose a folder you can write to", errno.EPERM: "choose a folder you can write to"}
        kept = f"; the previous {Path(path).name} is intact" if Path(path).exists() else ""
        return cls(err.errno, f"cannot write {path} ({err.strerror or err}): {hint.get(err.errno, 'check the path')}"
                              f"{kept}", str(path))


class CorruptFile(ValueError):
    """A file that exists but cannot be read as what it should be; the message names it and the fix."""


class FolderBusy(ValueError):
    """Another process holds a run folder's lock."""


def new_file_mode():
    """The mode open() gives a new file under this process's umask (mkstemp makes 0600 files)."""
    try:
        with open("/proc/self/status") as f:  # Linux: reads the umask without changing it (thread-safe)
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def temporary_beside(path, suffix=".tmp"):
    """A new, locked, empty file in `path`'s folder (a rename to `path` is atomic): yields (its path, fd).

    It is removed on the way out unless it was renamed away; its lock tells clean_debris it is live.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, new_file_mode())
        yield Path(tmp), fd
    finally:
        Path(tmp).unlink(missing_ok=True)
        os.close(fd)


def atomic_write(path, data):
    """Write `data` (bytes, or a function that writes to a binary file) to `path`: never half a file.

    Ctrl-C and SIGTERM wait for the write. An OSError (disk full, read-only) becomes WriteFailed,
    which names the path and the fix; the previous file stays as it was.
    """
    path = Path(path)
    with deferred_interrupt():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temporary_beside(path) as (tmp, fd):
                with open(fd, "wb", closefd=False) as f:
                    data(f) if callable(data) else f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
        except WriteFailed:
            raise
        except OSError as e:
            raise WriteFailed.of(path, e) from e


def write_json(path, obj):
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode())


CORRUPT_FIX = "delete it, or its run folder (`tinygpt train --overwrite` replaces a run; `tinygpt book run` trains " \
              "a deleted run again)"


def read_json(path, fix=CORRUPT_FIX):
    """The JSON in `path`; CorruptFile (a ValueError) naming the file and `fix` if it does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise CorruptFile(f"{path} is corrupt (not JSON: {e}); {fix}") from None


# ------------------------------------------------------------------------------------- locks

def _same_file(f, path):
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _first_existing(folder):
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextmanager
def folder_lock(folder, wait=False):
    """Hold folder/.lock (an flock, released when the process dies): FolderBusy at once if another
    process holds it, or with wait=True, wait for it.

    Holding it, no other process writes in the folder, so its temporary files are debris and go. On
    the way out a folder left holding only its lock (an early error) is removed, with the parents this
    call created.
    """
    folder = Path(folder)
    kept = _first_existing(folder.absolute())  # what existed before: never removed
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            f = open(folder / LOCK, "a")
        except FileNotFoundError:  # a cleaner removed the folder meanwhile: make it again
            continue
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            raise FolderBusy(f"{folder} is in use by another run (it holds {folder / LOCK}); wait for it to "
                             "finish or choose another folder") from None
        if _same_file(f, folder / LOCK):
            break
        f.close()  # the lock file was removed while we waited for it: lock the new one
    try:
        clean_debris(folder, before=time.time())
        yield folder
    finally:
        try:
            if _only_lock(folder):
                (folder / LOCK).unlink()
                _remove_empty(folder, kept)
        finally:
            f.close()  # releases the flock


def _only_lock(folder):
    try:
        return [p.name for p in folder.iterdir()] == [LOCK]
    except OSError:
        return False


def _remove_empty(folder, stop):
    """Remove `folder` and its empty parents, up to but not including `stop`."""
    folder, stop = Path(folder).absolute(), Path(stop).absolute()
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop here
            return
        folder = folder.parent


# ------------------------------------------------------------------------------------ debris

def _unheld(path):
    """An open file on `path` with its flock taken, or None if a live process holds it (or it is gone)."""
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return f
    except OSError:
        f.close()
        return None


def _older(path, before):
    try:
        return path.stat().st_mtime < before
    except OSError:
        return False


def clean_debris(folder, before=None):
    """Remove temporary files in `folder` that no process holds and that are older than `before`
    (default: this process's start); returns their paths."""
    folder, before = Path(folder), PROCESS_START if before is None else before
    removed = []
    try:
        names = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIXES)]
    except OSError:
        return removed
    for p in names:
        if _older(p, before) and (f := _unheld(p)) is not None:
            with f:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def remove_if_abandoned(folder, stop, before=None):
    """Remove `folder` (and its empty parents below `stop`) if it holds only a lock no process holds,
    older than `before`; True if removed."""
    folder, before = Path(folder), PROCESS_START if before is None else before
    if not _only_lock(folder) or not _older(folder / LOCK, before) or (f := _unheld(folder / LOCK)) is None:
        return False
    with f:
        if not _only_lock(folder) or not _same_file(f, folder / LOCK):
            return False
        (folder / LOCK).unlink()
    _remove_empty(folder, stop)
    return True
