"""Where a sweep's training runs execute: a local process pool, or a Ray cluster.

    run_sweep(args, jobs=4)                          # local: `jobs` spawned processes on this machine
    run_sweep(args, executor="ray", gpus_per_run=.25) # Ray: RAY_ADDRESS's cluster, else a local one

Both call the worker the caller passes (the run store's `experiments.train_job`) with one job per
run, so the run store's rules hold alike:
a finished run is skipped, a file lock in the run folder keeps a run from training twice at once
(also across machines, on a shared filesystem), and every file is written atomically.

Ray workers write straight into the driver's results folder, so that folder must be on a
filesystem every node mounts at the same path (docs/cluster.md); the driver checks that each
finished run's metrics.json is visible to it and reports the run as failed otherwise.

On a machine with GPUs the local pool pins each worker process to one device through
CUDA_VISIBLE_DEVICES, set before the worker touches CUDA: worker k gets visible GPU k mod G, so
--jobs 8 on one GPU packs eight runs on it and on four GPUs puts two on each. A run's torch thread
count is part of the run (its config), not of the executor, so both give bit-identical results on CPU.

Ctrl-C or SIGTERM stops a sweep: the pool's workers ignore Ctrl-C and get SIGTERM from the driver,
which their running task turns into an interrupt that removes its temporary files; Ray's tasks are
cancelled.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from .. import environ
from ..files import CorruptFile, read_json
from ..signals import interruptible, pool_worker_init

EXECUTORS = ("local", "ray")
EXECUTOR_ENV = "TINYGPT_EXECUTOR"  # the default executor; `book run --executor` sets it for the notebooks too
GPUS_ENV = "TINYGPT_GPUS_PER_RUN"
RAY_CPUS_ENV = "TINYGPT_RAY_CPUS"  # CPUs of a local Ray (default: every CPU of the machine)
# a worker needs the driver's data locations; results go to the root the driver names explicitly
_SHIPPED_ENV = ("TINYGPT_DATA_DIR", "TINYGPT_DATA_SOURCE", "TINYGPT_RESULTS")


class RunsFailed(RuntimeError):
    """Some runs of a sweep failed; the others finished. `failures` is [(run, error text)]."""

    def __init__(self, failures, total):
        self.failures = failures
        lines = "; ".join(f"{r.name} seed{r.seed}: {err}" for r, err in failures)
        super().__init__(f"{len(failures)} of {total} runs failed: {lines}")


def default_executor(executor=None):
    executor = executor or environ.get(EXECUTOR_ENV) or "local"
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)} (got {executor!r})")
    return executor


def default_gpus_per_run(gpus_per_run=None):
    if gpus_per_run is None:
        gpus_per_run = environ.get(GPUS_ENV)
    if gpus_per_run is not None and not 0 <= gpus_per_run:
        raise ValueError(f"gpus_per_run must be ≥ 0 (got {gpus_per_run})")
    return gpus_per_run


# ------------------------------------------------------------------------------- GPU assignment

def visible_gpus():
    """This process's GPUs as CUDA_VISIBLE_DEVICES names them (ids or UUIDs); [] without CUDA."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except ImportError:
        return []


def assign_gpus(jobs, gpus):
    """The GPU each of `jobs` worker processes is pinned to: round robin over `gpus` (None: no GPU)."""
    if jobs < 1:
        raise ValueError(f"jobs must be ≥ 1 (got {jobs})")
    gpus = list(gpus)
    return [gpus[k % len(gpus)] if gpus else None for k in range(jobs)]


def _pin_worker(slots):
    """Pool initializer: signals as signals.pool_worker_init, then take a slot; runs in the fresh (spawned)
    process before any CUDA call."""
    pool_worker_init()
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


# ------------------------------------------------------------------------------------ reporting

def finished_line(run, run_dir):
    """One line for a finished run: its best val loss (whole split) and training time, from metrics.json."""
    m = read_json(Path(run_dir) / "metrics.json")
    loss = m.get("val_loss_full", m["best_val_loss"])
    return f"{run.name} seed{run.seed}: best val loss {loss:.4f} (iter {m['best_iter']}, {m['elapsed_s']:.0f} s)"


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


class _Tracker:
    """Progress for a sweep: one bar (runs done/total) and a line per run as it finishes."""

    def __init__(self, total, desc, progress):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, desc=desc, unit="run", disable=not progress or not total)
        self.progress, self.failures = progress, []

    def done(self, run, run_dir):
        try:
            line = finished_line(run, run_dir)
        except CorruptFile as e:
            return self.failed(run, str(e))
        except (OSError, KeyError, ValueError) as e:
            # the worker says it finished, but the driver cannot read its results: not a shared folder
            return self.failed(run, f"finished on a worker but {run_dir}/metrics.json is not readable here "
                                    f"({type(e).__name__}); is the results folder shared by every node?")
        self._write(line)
        self.bar.update(1)

    def failed(self, run, error):
        self.failures.append((run, error))
        self._write(f"{run.name} seed{run.seed}: FAILED — {error}")
        self.bar.update(1)

    def _write(self, line):
        if self.progress:
            self.bar.write(line)  # above the bar, also where the bar is off (a log file)

    def close(self, total):
        self.bar.close()
        if self.failures:
            raise RunsFailed(self.failures, total)


# ------------------------------------------------------------------------------------ executors

def run_sweep(jobs_list, worker, jobs=1, executor=None, gpus_per_run=None, progress=True, desc="training"):
    """worker(job) for each job of `jobs_list` (each has .run, .threads and .uses_gpu; experiments.Job);
    the worker returns the run's folder.

    A failed run is reported with its error and does not stop the others; RunsFailed is raised
    at the end if any failed.
    """
    executor = default_executor(executor)
    tracker = _Tracker(len(jobs_list), desc, progress)
    if not jobs_list:
        tracker.close(0)
        return
    if executor == "ray":
        _run_ray(jobs_list, worker, default_gpus_per_run(gpus_per_run), tracker)
    elif jobs == 1:
        _run_inline(jobs_list, worker, tracker)
    else:
        _run_pool(jobs_list, worker, jobs, tracker)
    tracker.close(len(jobs_list))


def _run_inline(jobs_list, worker, tracker):
    for job in jobs_list:
        try:
            tracker.done(job.run, worker(job))
        except Exception as e:  # a diverged or broken run: the others still train
            tracker.failed(job.run, _first_line(e))


@contextmanager
def pinned_pool(jobs, gpus=()):
    """`jobs` spawned processes, worker k pinned to assign_gpus(jobs, gpus)[k]; submit tasks through
    `interruptible` (submit_interruptible). On Ctrl-C or SIGTERM here the workers get SIGTERM, wait
    for their tasks to clean up, and go."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    ctx = mp.get_context("spawn")  # spawn: a fresh process that has not touched CUDA yet (and no half-copied threads)
    slots = ctx.Queue()
    for gpu in assign_gpus(jobs, list(gpus)):
        slots.put(gpu)
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_pin_worker, initargs=(slots,))
    try:
        yield pool
    except BaseException:
        _stop(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def submit_interruptible(pool, fn, *args, **kwargs):
    return pool.submit(interruptible, partial(fn, *args, **kwargs))


def _stop(pool, grace=30):
    """SIGTERM every worker (its task raises Terminated and removes its temporary files), then SIGKILL
    any that has not gone within `grace` seconds."""
    procs = [p for p in dict(getattr(pool, "_processes", None) or {}).values() if p.is_alive()]  # a private dict
    pool.shutdown(wait=False, cancel_futures=True)  # nothing new starts
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(grace)
        if p.is_alive():
            p.kill()


def _run_pool(jobs_list, worker, jobs, tracker):
    from concurrent.futures import as_completed

    uses_gpu = any(job.uses_gpu for job in jobs_list)
    with pinned_pool(jobs, visible_gpus() if uses_gpu else []) as pool:
        futures = {submit_interruptible(pool, worker, job): job.run for job in jobs_list}
        for fut in as_completed(futures):
            try:
                tracker.done(futures[fut], fut.result())
            except Exception as e:  # the run's error, or its process died (BrokenProcessPool)
                tracker.failed(futures[fut], _first_line(e))


def connect_ray():
    """ray, initialised: the cluster at RAY_ADDRESS when set, else a local one sized to this machine."""
    try:
        import ray
    except ImportError:
        raise ImportError("--executor ray needs Ray: pip install -e '.[cluster]'") from None
    if ray.is_initialized():
        return ray
    address = os.environ.get("RAY_ADDRESS") or None
    cpus = environ.get(RAY_CPUS_ENV)
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    for attempt in (1, 2):
        try:
            ray.init(address=address, num_cpus=None if address else cpus, include_dashboard=False,
                     logging_level="WARNING", configure_logging=True)
            if sigterm is not None:  # ray.init's own handler exits with code 15 and no word; ours stops cleanly (143)
                signal.signal(signal.SIGTERM, sigterm)
            return ray
        except Exception:
            # a local Ray's raylet gives its agents ~15 s to start: on a loaded machine it can miss that
            # once, and the second start (modules now in the page cache) usually makes it
            ray.shutdown()
            if address or attempt == 2:
                raise
    return ray


def _ray_task(worker, job, env):
    """One run on a Ray worker: the driver's data locations, then the same worker as the local pool."""
    os.environ.update(env)
    return worker(job), socket.gethostname()


def _run_ray(jobs_list, worker, gpus_per_run, tracker):
    ray = connect_ray()
    # default: one GPU per run where the cluster has GPUs and the run may use one
    has_gpus = gpus_per_run is None and ray.cluster_resources().get("GPU", 0) > 0
    env = {k: os.environ[k] for k in _SHIPPED_ENV if k in os.environ}
    remote, pending = ray.remote(_ray_task), {}
    for job in jobs_list:
        run = job.run
        on_gpu = gpus_per_run if gpus_per_run is not None else (1 if has_gpus and job.uses_gpu else 0)
        # max_retries=1: a worker that dies (killed, out of memory, node lost) is retried once, resuming
        # from the run's checkpoint; an exception the run raises is not retried (it would raise again).
        # num_cpus: the run's own thread count, so that Ray packs runs as they will use the CPUs
        task = remote.options(num_cpus=job.threads, num_gpus=on_gpu, max_retries=1, name=f"{run.name}-seed{run.seed}")
        pending[task.remote(worker, job, env)] = run
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ready[0])
            try:
                run_dir, _host = ray.get(ready[0])
                tracker.done(run, run_dir)
            except Exception as e:  # RayTaskError wraps the run's own error; WorkerCrashedError after the retry
                cause = getattr(e, "cause", None)
                tracker.failed(run, _first_line(cause if isinstance(cause, BaseException) else e))
    except BaseException:  # Ctrl-C: the cluster's tasks stop too (their folders resume or are cleaned later)
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
