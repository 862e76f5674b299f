"""Executors: GPU pinning; the same runs, bit for bit, from the local pool (any --jobs) and Ray; clean stops."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tinygpt.book import executors
from tinygpt.book.experiments import Run, ensure_runs

RUNS = [Run("smoke", "baseline", 0), Run("smoke", "soft_window", 1)]
# what two trainings of the same run may differ in: wall-clock time
TIMING = {"elapsed_s", "tokens_per_s"}


def test_assign_gpus_round_robin():
    assert executors.assign_gpus(4, ["0"]) == ["0"] * 4  # several runs packed on one GPU
    assert executors.assign_gpus(5, ["0", "1"]) == ["0", "1", "0", "1", "0"]
    assert executors.assign_gpus(2, ["GPU-a1", "GPU-b2", "GPU-c3"]) == ["GPU-a1", "GPU-b2"]
    assert executors.assign_gpus(3, []) == [None, None, None]  # no GPU: nothing pinned
    with pytest.raises(ValueError, match="jobs"):
        executors.assign_gpus(0, ["0"])


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert executors.visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert executors.visible_gpus() == []


def _pinned(_):  # runs in a pool worker: which GPU it was pinned to, and which process it is
    time.sleep(0.3)  # hold the worker so that the next task goes to the other one
    return os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()


@pytest.mark.slow
def test_pool_pins_each_worker_before_it_runs(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with executors.pinned_pool(2, ["3", "7"]) as pool:
        seen = dict((pid, gpu) for gpu, pid in pool.map(_pinned, range(4)))
    assert sorted(seen.values()) == ["3", "7"]  # two processes, one GPU each
    with executors.pinned_pool(2, []) as pool:
        assert {gpu for gpu, _ in pool.map(_pinned, range(2))} == {None}


def _store(root):
    """Every run's metrics, history and best weights, without wall-clock timings."""
    out = {}
    for run in RUNS:
        d = run.path(root)
        metrics = json.loads((d / "metrics.json").read_text())
        evals = json.loads((d / "history.json").read_text())["evals"]
        out[run] = ({k: v for k, v in metrics.items() if k not in TIMING},
                    [{k: v for k, v in e.items() if k not in TIMING} for e in evals],
                    torch.load(d / "best.pt", weights_only=True)["model"])
    return out


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for this module's tests (no RAY_ADDRESS: never someone else's cluster)."""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra [cluster]: pip install -e '.[cluster]'")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)
        mp.setenv(executors.RAY_CPUS_ENV, "2")
        before = signal.getsignal(signal.SIGTERM)
        executors.connect_ray()
        assert signal.getsignal(signal.SIGTERM) == before  # ray.init's handler would exit 15 without a word
        yield ray
        ray.shutdown()


@pytest.mark.slow
def test_every_executor_trains_the_same_runs(tmp_path, data_dir, local_ray, monkeypatch, capsys):
    """A run's thread count is part of the run (its config), not of the executor: in this process (--jobs 1), in a
    pool of two and on Ray the metrics, histories and weights are the same bits, whatever the notebooks' thread
    budget (it once gave the pool's runs 2 threads at --jobs 1 and Ray's 1: 5th-7th digits apart)."""
    monkeypatch.setenv("TINYGPT_TORCH_THREADS", "2")
    times = {}
    for name, kwargs in (("inline", dict(jobs=1)), ("pool", dict(jobs=2)), ("ray", dict(executor="ray"))):
        t0 = time.perf_counter()
        dirs = ensure_runs(RUNS, root=tmp_path / name, need_model=True, **kwargs)
        times[name] = time.perf_counter() - t0
        assert dirs == [r.path(tmp_path / name) for r in RUNS]
    print(times)
    store = {name: _store(tmp_path / name) for name in times}
    for run in RUNS:
        config = json.loads((run.path(tmp_path / "ray") / "config.json").read_text())
        assert config["threads"] == 1  # recorded: the book's one thread per run
        for name in ("pool", "ray"):
            assert store[name][run][0] == store["inline"][run][0], (name, run)  # metrics: the same floats, bit for bit
            assert store[name][run][1] == store["inline"][run][1], (name, run)  # every evaluation
            weights, ref = store[name][run][2], store["inline"][run][2]
            assert weights.keys() == ref.keys() and all(torch.equal(weights[k], ref[k]) for k in ref), (name, run)
    out = capsys.readouterr().out
    for run in RUNS:  # a line per finished run, from each executor
        assert out.count(f"{run.name} seed{run.seed}: best val loss") == 3, out

    # finished runs are skipped: nothing is trained (or reported) the second time
    ensure_runs(RUNS, root=tmp_path / "ray", need_model=True, executor="ray")
    assert "best val loss" not in capsys.readouterr().out


def test_results_without_a_thread_count_read_as_the_books_one(tmp_path, data_dir, capsys):
    """The committed results predate the field: their configs have no "threads" and must load, not retrain."""
    from tinygpt.book.experiments import is_finished
    run = Run("smoke", "baseline", 5, tag="old", overrides={"max_iters": 2, "eval_interval": 2, "eval_iters": 1})
    [d] = ensure_runs([run], root=tmp_path, progress=False)
    config = json.loads((d / "config.json").read_text())
    del config["threads"]
    (d / "config.json").write_text(json.dumps(config))
    assert is_finished(d, run.config())
    stamp = (d / "metrics.json").stat().st_mtime_ns
    ensure_runs([run], root=tmp_path, progress=False)
    assert (d / "metrics.json").stat().st_mtime_ns == stamp  # loaded, not retrained
    assert not is_finished(d, run.config(threads=2))  # another thread count is another run


STOP = """
import sys
from tinygpt.book.experiments import Run, ensure_runs
from tinygpt.signals import exit_code, sigterm_raises
runs = [Run("smoke", "baseline", s, tag="long", overrides={"max_iters": 10 ** 6, "eval_interval": 2}) for s in (0, 1)]
try:
    with sigterm_raises():
        ensure_runs(runs, jobs=2, root=sys.argv[1], progress=False)
except KeyboardInterrupt as e:
    print("stopped", file=sys.stderr)
    sys.exit(exit_code(e))
"""


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_pool_leaves_whole_runs_and_no_traceback(tmp_path, data_dir, sig):
    """Ctrl-C (to the whole group, as a terminal sends it) or SIGTERM (to the driver): the workers stop, no
    traceback from any of them, no temporary file; each run resumes from a whole checkpoint."""
    p = subprocess.Popen([sys.executable, "-c", STOP, str(tmp_path)], stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=_default_sigint)
    try:
        ckpts = [tmp_path / "smoke" / "long" / f"seed{s}" / "ckpt.pt" for s in (0, 1)]
        deadline = time.monotonic() + 240
        while not all(c.exists() for c in ckpts):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() else "too slow"
            time.sleep(0.2)
        time.sleep(1)
        os.killpg(p.pid, sig) if sig == signal.SIGINT else p.send_signal(sig)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == (130 if sig == signal.SIGINT else 143), stderr
    assert stderr.strip() == "stopped", stderr
    for c in ckpts:
        assert torch.load(c, weights_only=True)["iter_num"] > 0
        assert not [f.name for f in c.parent.iterdir() if f.name.endswith(".tmp")]


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])  # Ray starts in ~30 s
def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, data_dir, executor, monkeypatch, request):
    if executor == "ray":
        request.getfixturevalue("local_ray")
    bad = Run("smoke", "baseline", 0, tag="bad", overrides={"dataset": "no_such_dataset"})
    good = Run("smoke", "baseline", 3)
    with pytest.raises(executors.RunsFailed, match=r"1 of 2 runs failed: bad seed0: .*no_such_dataset") as err:
        ensure_runs([bad, good], jobs=2, root=tmp_path, executor=executor)
    assert [r for r, _ in err.value.failures] == [bad]
    assert (good.path(tmp_path) / "metrics.json").exists()


def test_unknown_executor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="executor must be one of local, ray"):
        ensure_runs(RUNS, root=tmp_path, executor="dask")


def test_book_run_checks_gpus_per_run(capsys):
    from tinygpt import cli
    assert cli.main(["book", "run", "--preset", "smoke", "--gpus-per-run", "0.25"]) == 2  # needs --executor ray
    assert "--gpus-per-run needs --executor ray" in capsys.readouterr().err
    assert cli.main(["book", "run", "--preset", "smoke", "--executor", "ray", "--gpus-per-run", "-1"]) == 2


ORPHAN = """
import os, sys, time
from tinygpt.book.executors import pinned_pool, submit_interruptible
with pinned_pool(2) as pool:
    futures = [submit_interruptible(pool, time.sleep, 600), submit_interruptible(pool, os.getpid)]
    print(futures[1].result(), flush=True)  # a worker's pid: the pool is up
    time.sleep(600)
"""


def test_workers_die_with_their_parent():
    """kill -9 of a command (no cleanup of its own) must not leave its pool's workers running on."""
    psutil = pytest.importorskip("psutil")
    p = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(p.stdout.readline())
        children = psutil.Process(p.pid).children()  # both workers (one busy, one idle) and the resource tracker
        assert worker in [c.pid for c in children] and len(children) >= 2
    finally:
        p.kill()
        p.wait()
    _, alive = psutil.wait_procs(children, timeout=30)
    for c in alive:  # not left behind by a failing test either
        c.kill()
    assert not alive, f"{alive} outlived their parent"
