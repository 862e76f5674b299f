"""Executors: GPU pinning of the local pool, and Ray giving the same runs as the local pool, bit for bit."""

import json
import os
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
        executors.connect_ray()
        yield ray
        ray.shutdown()


def test_ray_trains_the_same_runs_as_the_local_pool(tmp_path, data_dir, local_ray, monkeypatch, capsys):
    monkeypatch.setenv("TINYGPT_TORCH_THREADS", "2")  # the pool's 2 workers get 1 thread each, as Ray's tasks do
    t0 = time.perf_counter()
    ensure_runs(RUNS, jobs=2, root=tmp_path / "pool", need_model=True)
    t_pool = time.perf_counter() - t0
    t0 = time.perf_counter()
    dirs = ensure_runs(RUNS, root=tmp_path / "ray", need_model=True, executor="ray")
    t_ray = time.perf_counter() - t0
    print(f"pool {t_pool:.1f} s, ray {t_ray:.1f} s")
    assert dirs == [r.path(tmp_path / "ray") for r in RUNS]

    pool, ray = _store(tmp_path / "pool"), _store(tmp_path / "ray")
    for run in RUNS:
        assert pool[run][0] == ray[run][0], run  # metrics: the same floats, bit for bit
        assert pool[run][1] == ray[run][1], run  # every evaluation
        assert pool[run][2].keys() == ray[run][2].keys()
        assert all(torch.equal(pool[run][2][k], ray[run][2][k]) for k in pool[run][2]), run
    out = capsys.readouterr().out
    for run in RUNS:  # a line per finished run, from each executor
        assert out.count(f"{run.name} seed{run.seed}: best val loss") == 2, out

    # finished runs are skipped: nothing is trained (or reported) the second time
    ensure_runs(RUNS, root=tmp_path / "ray", need_model=True, executor="ray")
    assert "best val loss" not in capsys.readouterr().out


@pytest.mark.parametrize("executor", ["local", "ray"])
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
