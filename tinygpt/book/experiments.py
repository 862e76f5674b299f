"""Load-or-train: the runs the book needs, each in results/<preset>/<tag>/seed<k>/.

A finished run (metrics.json present, same config) is re-used unless retrain=True; an interrupted
one resumes from its checkpoint. Runs are shared between notebooks (01's baseline seeds serve
02–06), so a file lock keeps two notebooks from training the same run at once.
"""

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import read_json

_IGNORED = ("device", "dtype", "compile")  # where a run trained does not change what it is


def repo_root():
    return Path(__file__).resolve().parents[2]


def results_root(root=None):
    return Path(root or os.environ.get("TINYGPT_RESULTS") or repo_root() / "results")


@dataclass(frozen=True)
class Run:
    """One training run: a preset, a variant, a seed, and overrides that a tag names."""

    preset: str
    variant: str = "baseline"
    seed: int = 0
    tag: str | None = None  # folder name; default: the variant (must be given when overrides are)
    overrides: dict = field(default_factory=dict, hash=False)
    need_model: bool = field(default=True, compare=False)  # False: only its losses are read (no checkpoint kept)

    def __post_init__(self):
        if self.overrides and not self.tag:
            raise ValueError(f"a run with overrides {self.overrides} needs a tag naming it")

    @property
    def name(self):
        return self.tag or self.variant

    def config(self, **extra):
        from ..presets import make_config
        return make_config(self.preset, variant=self.variant, seed=self.seed, **self.overrides, **extra)

    def path(self, root=None):
        return results_root(root) / self.preset / self.name / f"seed{self.seed}"


def _comparable(cfg_dict):
    d = {k: v for k, v in cfg_dict.items() if k not in _IGNORED}
    d["model"] = {k: v for k, v in cfg_dict["model"].items() if k != "vocab_size"}
    return d


def is_finished(run_dir, cfg, need_model=False):
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").exists() or not (run_dir / "config.json").exists():
        return False
    if need_model and not (run_dir / "best.pt").exists():
        return False
    return _comparable(read_json(run_dir / "config.json")) == _comparable(cfg.to_dict())


@contextmanager
def _locked(run_dir):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_run(run: Run, retrain=False, root=None, need_model=False, progress=False, device="auto"):
    """Train `run` unless a finished copy exists; returns its folder."""
    from ..train import train
    cfg = run.config(device=device)
    run_dir = run.path(root)
    with _locked(run_dir):
        if not retrain and is_finished(run_dir, cfg, need_model):
            return run_dir
        stale = retrain or (run_dir / "config.json").exists() and not _same_config(run_dir, cfg)
        # a finished run whose model is gone: its weights are only recovered by training it again from the start
        stale = stale or need_model and (run_dir / "metrics.json").exists() and not (run_dir / "best.pt").exists()
        if stale:  # start over: an old config's files must not mix with the new run's
            for name in ("ckpt.pt", "best.pt", "history.json", "metrics.json", "config.json"):
                (run_dir / name).unlink(missing_ok=True)
        train(cfg, run_dir, resume=(run_dir / "ckpt.pt").exists(), progress=progress, log=lambda *a: None)
    return run_dir


def _same_config(run_dir, cfg):
    return _comparable(read_json(run_dir / "config.json")) == _comparable(cfg.to_dict())


def _worker(args):
    run, retrain, root, need_model, device, threads = args
    import torch
    torch.set_num_threads(threads)
    return str(ensure_run(run, retrain=retrain, root=root, need_model=need_model, device=device))


def ensure_runs(runs, jobs=1, retrain=False, root=None, need_model=False, device="auto", progress=True,
                executor=None, gpus_per_run=None):
    """ensure_run for many runs; returns their folders.

    executor "local" (default; $TINYGPT_EXECUTOR overrides): `jobs` at a time in separate processes,
    each pinned to one visible GPU where there are GPUs. "ray": as Ray tasks on the cluster at
    $RAY_ADDRESS, else on a local Ray, `gpus_per_run` GPUs each (fractions pack several per GPU).
    Prints a line per finished run with its best val loss; a failed run does not stop the others
    (executors.RunsFailed is raised at the end).
    """
    from .executors import default_executor, run_sweep
    runs = list(runs)
    executor = default_executor(executor)
    todo = [r for r in dict.fromkeys(runs)  # the same run listed twice trains once
            if retrain or not is_finished(r.path(root), r.config(device=device), need_model and r.need_model)]
    jobs = max(1, min(jobs, len(todo) or 1))
    if executor == "ray":  # one CPU per task: torch in each uses one thread, as the local pool's workers on CPUs
        threads = 1
    else:
        # the thread budget (the book's per-notebook share, else every core) is split between the jobs:
        # two processes of two threads each on two cores run many times slower than one thread each
        budget = int(os.environ.get("TINYGPT_TORCH_THREADS", 0)) or os.cpu_count() or 1
        threads = max(1, budget // jobs)
    root = str(results_root(root).resolve()) if executor == "ray" else root  # a worker's cwd is not ours
    args = [(r, retrain, root, need_model and r.need_model, device, threads) for r in todo]
    if executor == "local" and jobs == 1:
        import torch
        torch.set_num_threads(threads)
    run_sweep(todo, args, jobs=jobs, executor=executor, gpus_per_run=gpus_per_run, cpus_per_run=threads,
              progress=progress, desc=f"training {len(todo)} of {len(runs)} runs")
    return [r.path(root) for r in runs]


def load_run_model(run_dir, device="cpu"):
    from ..checkpoint import load
    return load(Path(run_dir) / "best.pt", device=device)
