"""Execute one notebook with papermill: never a silent hang, never a half-written copy.

    execute_notebook(src, out_dir, parameters, kernel=None, cwd=None, threads=None, cell_timeout=None)

papermill runs in a thread while this process's main thread watches it:
- every cell has a timeout (`cell_timeout` seconds; `tinygpt book run --cell-timeout`), past which the
  notebook fails, naming the cell;
- a kernel that stops answering is found by a probe. Once a cell has run for `probe_after` seconds, an
  empty, silent request goes to the kernel through a second connection. The kernel handles requests in
  the order they come, so an answer means the cell has finished; if papermill still waits for that cell
  `grace` seconds later, the cell's reply was lost (a known papermill/nbclient failure: kernel and
  client both idle, forever). The kernel is then stopped and the notebook run once more; a kernel lost
  (or dead) twice fails it, naming the cell;
- Ctrl-C or SIGTERM stops the kernel (its process group: any training processes it started) and
  removes the partial copy.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..files import temporary_beside

THREADS_ENV = "TINYGPT_TORCH_THREADS"
DEFAULT_KERNEL = "python3"
PROBE_AFTER = 60.0  # seconds a cell runs before the kernel is asked whether it has finished
GRACE = 15.0  # nbclient waits up to 4 s (iopub_timeout) for a cell's last outputs after its reply


class KernelLost(RuntimeError):
    """The kernel died, or finished a cell whose reply never reached papermill."""


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def first_line(exc):
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def notebook_kernel(path):
    """The kernel a notebook asks for (its metadata's kernelspec), else python3."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {})
        return meta.get("kernelspec", {}).get("name") or DEFAULT_KERNEL
    except (OSError, ValueError, AttributeError):
        return DEFAULT_KERNEL


@contextmanager
def env_vars(**values):
    """Set environment variables (None: leave as is) for the duration of the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Watch:
    """What papermill's thread is doing (nbclient's hooks) and the probe that checks on its kernel."""

    def __init__(self, probe_after, grace):
        from jupyter_client import AsyncKernelManager
        self.probe_after, self.grace = probe_after, grace
        self.kms, self.serial, self.running, self.index, self.source, self.started = [], 0, False, None, "", 0.0
        self.probe, self.probe_serial, self.answered_at, self.lost = None, None, None, None  # lost: where
        kms = self.kms

        class TrackedKernelManager(AsyncKernelManager):  # nbclient makes (and owns) it; we need its process
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                kms.append(self)
        self.km_class = TrackedKernelManager

    def cell_started(self, cell, cell_index):
        self.index, self.source = cell_index, (cell.source.strip().splitlines() or [""])[0][:60]
        self.serial, self.running, self.started, self.answered_at = self.serial + 1, True, time.monotonic(), None

    def cell_done(self, cell, cell_index, execute_reply):
        self.running = False

    def where(self):
        return f"cell {self.index} (`{self.source}`)"

    def check(self):
        """Probe a long-running cell's kernel; stop the kernel once its answer shows the cell's reply lost."""
        t = time.monotonic()
        if not self.running or self.lost or not self.kms or t - self.started < self.probe_after:
            return
        if self.probe is None:
            self.probe = _Probe(self.kms[-1])
        if self.probe.answered() and self.probe_serial == self.serial:
            self.answered_at = t  # the kernel has handled this cell's request, and the probe's after it
        if self.answered_at is None:
            if self.probe.pending is None:  # one at a time: an unanswered probe means the kernel is busy
                self.probe.send()
                self.probe_serial = self.serial
        elif t - self.answered_at > self.grace:
            self.lost = self.where()
            logging.getLogger("papermill").disabled = True  # our own line says what happened
            self.stop_kernel()

    def stop_kernel(self, grace=5.0):
        """SIGTERM to the kernel's process group (training processes clean up), SIGKILL after `grace` s."""
        pid = getattr(self.kms[-1].provisioner, "pid", None) if self.kms else None
        if not pid:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)  # the kernel leads a session of its own (jupyter_client)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.killpg(pid, 0)
                except (ProcessLookupError, PermissionError):
                    return
                time.sleep(0.1)

    def close(self):
        if self.probe is not None:
            self.probe.close()


class _Probe:
    """A second connection to a kernel that sends empty, silent requests and sees their replies."""

    def __init__(self, km):
        from jupyter_client import BlockingKernelClient
        self.kc = BlockingKernelClient()
        self.kc.load_connection_info(km.get_connection_info())
        self.kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        self.pending = None

    def send(self):
        self.pending = self.kc.execute("", silent=True, store_history=False)

    def answered(self):
        from queue import Empty
        while self.pending is not None:
            try:
                msg = self.kc.get_shell_msg(timeout=0)
            except Empty:
                return False
            if msg["parent_header"].get("msg_id") == self.pending:
                self.pending = None
                return True
        return False

    def close(self):
        self.kc.stop_channels()


def _execute_once(src, tmp, parameters, kernel, cwd, log_output, cell_timeout, probe_after, grace):
    """papermill in a thread, watched from here; returns (its exception or None, the watch)."""
    import papermill as pm
    watch, outcome = _Watch(probe_after, grace), []

    def target():
        try:
            pm.execute_notebook(str(src), str(tmp), parameters=dict(parameters), kernel_name=kernel, cwd=str(cwd),
                                progress_bar=False, log_output=log_output, execution_timeout=cell_timeout,
                                kernel_manager_class=watch.km_class, on_cell_execute=watch.cell_started,
                                on_cell_executed=watch.cell_done, shutdown_kernel="immediate")
        except BaseException as e:  # reported by the main thread
            outcome.append(e)

    thread = threading.Thread(target=target, name=f"papermill {src.stem}", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(1.0)
            watch.check()
    except BaseException:  # Ctrl-C, SIGTERM: the kernel goes, papermill's thread follows it (quietly)
        logging.getLogger("papermill").disabled = True
        watch.stop_kernel()
        thread.join(30)
        raise
    finally:
        watch.close()
        logging.getLogger("papermill").disabled = False
    return (outcome[0] if outcome else None), watch


def _failure(err, watch, cell_timeout):
    """(the error line, whether to run the notebook once more)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    if watch.lost:
        return f"KernelLost: the kernel finished {watch.lost} but its reply never came", True
    if isinstance(err, DeadKernelError):
        return f"KernelLost: the kernel died during {watch.where()}", True
    if isinstance(err, CellTimeoutError) and "IOPub" not in str(err):
        return (f"CellTimeout: {watch.where()} ran past the cell timeout ({cell_timeout:g} s); raise it with "
                "--cell-timeout"), False
    return first_line(err), False


def execute_notebook(src, out_dir, parameters=None, kernel=None, cwd=None, threads=None, log_output=False,
                     cell_timeout=None, probe_after=PROBE_AFTER, grace=GRACE):
    """Execute one notebook into out_dir/<name>.ipynb; the source is never written.

    papermill writes to a hidden, locked temporary file in out_dir, which then replaces the executed
    copy (os.replace, atomic). A failed execution goes to <name>.failed.ipynb beside it (it shows the
    failing cell) and never replaces a good copy; a later success removes it. `threads` is exported
    as TINYGPT_TORCH_THREADS to the kernel, whose working directory is `cwd` (default: the source's
    folder). Never raises for a failing notebook: returns {notebook, status ("ok" or "FAILED"),
    seconds, started_at, error (first line), output, kernel, attempts}.
    """
    src, out_dir = Path(src).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / src.name
    if dest == src:
        raise ValueError(f"the executed copy would overwrite its source {src}; choose another out_dir")
    kernel = kernel or notebook_kernel(src)
    parameters = dict(parameters or {})
    result = dict(notebook=src.stem, status="ok", seconds=0.0, started_at=now(), error="", output=None,
                  kernel=kernel, attempts=0)
    t0 = time.perf_counter()
    with temporary_beside(dest, suffix=".running.ipynb") as (tmp, _), \
            env_vars(**{THREADS_ENV: threads, "TINYGPT_PRESET": parameters.get("preset")}):
        for attempt in (1, 2):
            result["attempts"] = attempt
            err, watch = _execute_once(src, tmp, parameters, kernel, cwd or src.parent, log_output, cell_timeout,
                                       probe_after, grace)
            if err is None:
                result.update(status="ok", error="")
                break
            error, again = _failure(err, watch, cell_timeout)
            result.update(status="FAILED", error=error)
            if not again or attempt == 2:
                break
            print(f"{src.stem}: {error}; running it once more", file=sys.stderr, flush=True)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        failed = dest.with_suffix(".failed.ipynb")
        if os.path.getsize(tmp) > 0:
            target = failed if result["status"] != "ok" else dest
            _unpair(tmp, stamp=dict(preset=parameters.get("preset"), started_at=result["started_at"],
                                    seconds=result["seconds"], status=result["status"]), paths=(src, target))
            os.replace(tmp, target)
            result["output"] = str(target)
            if result["status"] == "ok":
                failed.unlink(missing_ok=True)
    return result


def repo_relative(path):
    """A path as the repository names it (notebooks/01_baseline.ipynb), or its name alone when it lies outside:
    an executed page must not carry the absolute paths of the machine that ran it."""
    from ..environ import REPO_ROOT
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return path.name


def _unpair(path, stamp=None, paths=None):
    """Drop the jupytext pairing an executed copy inherits from its source: no .py twins in book/.

    `stamp` (preset, start, wall seconds…) goes into the copy's metadata as "tinygpt_run"; `paths` (source,
    final copy) replace papermill's absolute input and output paths with repo_relative ones.
    """
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        jt = nb["metadata"].get("jupytext")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    paired = isinstance(jt, dict) and "formats" in jt
    if paired:
        del jt["formats"]
        if not jt:
            del nb["metadata"]["jupytext"]
    if stamp:
        nb["metadata"]["tinygpt_run"] = stamp
    pm = nb["metadata"].get("papermill")
    if paths and isinstance(pm, dict):
        pm["input_path"], pm["output_path"] = (repo_relative(p) for p in paths)
    if paired or stamp or paths:
        Path(path).write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
