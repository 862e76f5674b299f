"""Ctrl-C and SIGTERM end a command the same way: one line, the shell's exit code, only whole files.

SIGTERM (what `kill` and a cluster scheduler send) raises Terminated, a KeyboardInterrupt, so every
path that cleans up after Ctrl-C cleans up after it too; exit_code() tells 130 from 143 apart.
Worker processes of a pool ignore Ctrl-C (the terminal sends it to the whole process group): their
parent stops them with SIGTERM, which a running task turns into Terminated and cleans up after.
"""

import os
import signal
import threading
from contextlib import contextmanager

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt."""


_sigterm = []  # set once SIGTERM arrived: a library (Ray's ray.wait) may re-raise it as a plain KeyboardInterrupt


def terminated(interrupt):
    """Whether an interrupt came from SIGTERM rather than Ctrl-C."""
    return isinstance(interrupt, Terminated) or bool(_sigterm)


def exit_code(interrupt):
    """The shell's code for the signal behind an interrupt: 143 (SIGTERM) or 130 (SIGINT)."""
    return 143 if terminated(interrupt) else 130


def _raise_terminated(signum, frame):
    # one SIGTERM stops the command; a second one (a process pool terminates the workers left when one
    # exits) must not cut the first one's clean-up short, so it is ignored until the block ends
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _sigterm.append(signum)
    raise Terminated()


def _main_thread():
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_raises():
    """While the block runs, SIGTERM raises Terminated instead of killing the process (main thread only)."""
    if not _main_thread():
        yield
        return
    _sigterm.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        _sigterm.clear()  # read within the block (the command's exit code); a later Ctrl-C is Ctrl-C


@contextmanager
def deferred_interrupt():
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first as it would have been.

    A KeyboardInterrupt raised inside torch.save's zip writer surfaces as a RuntimeError from its
    cleanup, and one between two files of an evaluation leaves them out of step; writes are short,
    so the interrupt waits for them. Only the main thread can install handlers; nested blocks defer to the outer.
    """
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    # None: a handler not set from Python, which we could not restore
    if not _main_thread() or any(h is None or getattr(h, "_defers", False) for h in previous.values()):
        yield
        return
    caught = []

    def hold(signum, frame):
        caught.append((signum, frame))
    hold._defers = True
    for s in _SIGNALS:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if caught:
            signum, frame = caught[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:  # what the signal would have done: SIGINT raises, SIGTERM kills
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                signal.raise_signal(signum)


def pool_worker_init():
    """A pool worker's first act: ignore Ctrl-C (the parent decides), die quietly on SIGTERM when idle,
    and get SIGTERM when the parent dies (kill -9 of a command must not leave its workers running on)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def interruptible(fn, *args):
    """Run a pool task so that the parent's SIGTERM raises Terminated in it: its files are cleaned up
    (the task's own finally blocks), then the worker exits at once, as its parent is stopping."""
    try:
        with sigterm_raises():
            return fn(*args)
    except Terminated:
        os._exit(143)
