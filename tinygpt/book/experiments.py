"""Load-or-train: the runs the book needs, each in results/<preset>/<tag>/seed<k>/.

A finished run (metrics.json present, same config) is re-used unless retrain=True; an interrupted
one resumes from its checkpoint. Runs are shared between notebooks (01's baseline seeds serve
02–06), so a file lock keeps two notebooks from training the same run at once. Every book run
trains with BOOK_THREADS torch threads, whichever executor trains it: the count is part of the run.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import environ
from ..files import CorruptFile, clean_debris, folder_lock, read_json, remove_if_abandoned
from .executors import default_executor, run_sweep

_IGNORED = ("device", "dtype", "compile")  # where a run trained does not change what it is
# torch threads per book run. The committed results were trained so (the book's pool on 2 cores): their
# configs, from before the field was recorded, read as this.
BOOK_THREADS = 1
RUN_FILES = ("config.json", "history.json", "metrics.json")  # a run's JSON, checked before a book runs


def repo_root():
    return Path(__file__).resolve().parents[2]


def results_root(root=None):
    return Path(root or environ.get("TINYGPT_RESULTS") or repo_root() / "results")


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
        return make_config(self.preset, variant=self.variant, seed=self.seed,
                           **{"threads": BOOK_THREADS, **self.overrides, **extra})

    def path(self, root=None):
        return results_root(root) / self.preset / self.name / f"seed{self.seed}"


def _comparable(cfg_dict):
    d = {k: v for k, v in cfg_dict.items() if k not in _IGNORED}
    d.setdefault("threads", BOOK_THREADS)
    d["model"] = {k: v for k, v in cfg_dict["model"].items() if k != "vocab_size"}
    return d


def _read(run_dir, name):
    return read_json(Path(run_dir) / name, fix=f"delete the run folder {run_dir} (the book trains it again)")


def _same_config(run_dir, cfg):
    return _comparable(_read(run_dir, "config.json")) == _comparable(cfg.to_dict())


def is_finished(run_dir, cfg, need_model=False):
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").exists() or not (run_dir / "config.json").exists():
        return False
    if need_model and not (run_dir / "best.pt").exists():
        return False
    return _same_config(run_dir, cfg)


def ensure_run(run: Run, retrain=False, root=None, need_model=False, progress=False, device="auto"):
    """Train `run` unless a finished copy exists; returns its folder."""
    from ..train import train
    cfg = run.config(device=device)
    run_dir = run.path(root)
    with folder_lock(run_dir, wait=True):
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


@dataclass(frozen=True)
class Job:
    """One run for a worker (a pool process, a Ray task, or this process): what ensure_run needs."""

    run: Run
    retrain: bool = False
    root: str | None = None
    need_model: bool = False
    device: str = "auto"

    @property
    def threads(self):
        """CPUs the run uses (what a Ray task reserves)."""
        return max(1, self.run.config(device=self.device).threads)

    @property
    def uses_gpu(self):
        return self.device != "cpu" and self.run.config(device=self.device).device != "cpu"


def train_job(job: Job):
    """The worker every executor runs: the job's run, trained unless finished; returns its folder."""
    return str(ensure_run(job.run, retrain=job.retrain, root=job.root, need_model=job.need_model, device=job.device))


def ensure_runs(runs, jobs=1, retrain=False, root=None, need_model=False, device="auto", progress=True,
                executor=None, gpus_per_run=None):
    """ensure_run for many runs; returns their folders.

    executor "local" (default; $TINYGPT_EXECUTOR overrides): `jobs` at a time in separate processes,
    each pinned to one visible GPU where there are GPUs. "ray": as Ray tasks on the cluster at
    $RAY_ADDRESS, else on a local Ray, `gpus_per_run` GPUs each (fractions pack several per GPU).
    Either way a run trains with its own thread count (BOOK_THREADS), so the results are the same.
    Prints a line per finished run with its best val loss; a failed run does not stop the others
    (executors.RunsFailed is raised at the end).
    """
    runs = list(runs)
    executor = default_executor(executor)
    check_results_root(root)
    todo = [r for r in dict.fromkeys(runs)  # the same run listed twice trains once
            if retrain or not is_finished(r.path(root), r.config(device=device), need_model and r.need_model)]
    root = str(results_root(root).resolve()) if executor == "ray" else root  # a worker's cwd is not ours
    work = [Job(r, retrain, root, need_model and r.need_model, device) for r in todo]
    run_sweep(work, train_job, jobs=max(1, min(jobs, len(todo) or 1)), executor=executor, gpus_per_run=gpus_per_run,
              progress=progress, desc=f"training {len(todo)} of {len(runs)} runs")
    return [r.path(root) for r in runs]


# ----------------------------------------------------------------------- the store's own health

def check_results_root(root=None):
    """The results folder must be a folder this process can write to: checked before any run starts
    (else every run fails the same way, one after the other). Returns it."""
    path = results_root(root).absolute()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"the results folder {path} is a file, not a folder: point TINYGPT_RESULTS "
                                 "(or out_dir) at a folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise PermissionError(f"cannot write to the results folder {path}: choose a folder you can write to "
                              "(TINYGPT_RESULTS)")
    return path


def sweep_results(root=None, before=None):
    """Remove what killed runs left in the store: temporary files no process holds, and run folders
    holding only a lock no process holds (an early error). Returns how many went."""
    root = results_root(root)
    removed = 0
    for run_dir in sorted(root.glob("*/*/seed*")):
        if run_dir.is_dir():
            removed += len(clean_debris(run_dir, before))
            removed += remove_if_abandoned(run_dir, stop=root, before=before)
    return removed


def check_run_files(preset, root=None):
    """CorruptFile naming every run file under results/<preset>/ that is not valid JSON, and the fix."""
    bad = []
    for path in sorted((results_root(root) / preset).glob("*/seed*/*.json")):
        if path.name in RUN_FILES:
            try:
                json.loads(path.read_bytes())
            except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
                bad.append((path, e))
    if bad:
        files = "; ".join(f"{p} (not JSON: {e})" for p, e in bad[:3]) + (" …" if len(bad) > 3 else "")
        folders = ", ".join(sorted({str(p.parent) for p, _ in bad}))
        raise CorruptFile(f"{len(bad)} corrupt run file(s): {files}. Delete the run folder(s) ({folders}): "
                          "the book trains them again")


def load_run_model(run_dir, device="cpu"):
    from ..checkpoint import load
    return load(Path(run_dir) / "best.pt", device=device)
