"""`tinygpt book run`: execute the book's notebooks (execute.py runs each), many at a time, and log it.

    tinygpt book run --preset cpu                       # notebooks/*.ipynb -> book/*.ipynb, executed
    tinygpt book run --preset gpu --notebooks 01 03 --jobs 2 --set retrain=True

`run` never modifies the sources in notebooks/: it writes executed copies into book/ (atomically; a
failed notebook goes to <name>.failed.ipynb and never replaces a good copy) and records the timing
of each notebook in book/_run_log.json. A preset other than the published book's (cpu) goes to
build/book-<preset>/ instead. Rendering is site.py's (`book build`).

Before anything runs, the output folder and the results folder are checked (folders this process
can write to; every run's JSON readable), and what an earlier, killed run left is removed: partial
copies (.<name>.*.running.ipynb), temporary files and run folders holding only a lock, where no live
process holds them (files.py).

The functions below take `notebooks_dir` and `out_dir` arguments (default: the repository's
notebooks/ and book/), so that tests and scripts can point them elsewhere:

    find_notebooks(notebooks_dir=None, select=None) -> [Path]     # select by prefix: "01", "02_query"
    parse_sets(["lr=1e-3", "variant=soft_window"]) -> {"lr": 0.001, "variant": "soft_window"}
    stages(paths) -> [[01…], [chapters], [conclusions]]              # the order notebooks run in
    run_notebooks(preset, select=None, jobs=1, ...) -> [result dict]   # the work of `book run`
    format_summary(results) -> str; write_run_log(results, preset, out_dir, ...) -> Path   (runlog.py)
    run(preset, ...) -> exit code                        # run_notebooks + summary table + run log
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import time
from pathlib import Path

from .. import environ
from ..files import clean_debris
from .execute import THREADS_ENV, env_vars, execute_notebook, first_line, now
from .runlog import RUN_LOG, cpu_count, format_summary, published_preset, write_run_log  # noqa: F401 (API)

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BOOK_DIR = REPO_ROOT / "book"
# Seconds a cell may run (`--cell-timeout` overrides): far above the longest cell a preset has (a
# chapter that trains its runs itself, --set retrain=True, on a slow machine), so that only a hang reaches it
CELL_TIMEOUTS = {"smoke": 15 * 60, "cpu": 12 * 3600, "gpu": 12 * 3600}


def default_out_dir(preset):
    """book/ for the published preset; build/book-<preset>/ for any other, so that a smoke run never
    replaces the published chapters."""
    return BOOK_DIR if preset == published_preset(BOOK_DIR) else REPO_ROOT / "build" / f"book-{preset}"


def cell_timeout_of(preset, seconds=None):
    """The cell timeout of a run: `seconds` if given, else the preset's (the longest for an unknown one)."""
    if seconds is not None:
        if not 0 < seconds < float("inf"):
            raise ValueError(f"--cell-timeout must be a number of seconds > 0 (got {seconds})")
        return float(seconds)
    return float(CELL_TIMEOUTS.get(preset, max(CELL_TIMEOUTS.values())))


def check_out_dir(out_dir, option="--out-dir"):
    """The folder executed copies go to must be a folder this process can write to (or can make); makes nothing."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{option} {out_dir} is a file, not a folder: choose a folder path")
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    why = "a file is in the way" if not existing.is_dir() else None if os.access(existing, os.W_OK) else \
        "Read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "Permission denied"
    if why:
        raise ValueError(f"cannot write to {option} {out_dir} ({why}): choose a folder you can write to")
    return out_dir


def before_run(preset, out_dir, root=None):
    """What `book run` checks and cleans before anything runs: the output folder and the results folder
    (`root`, the notebooks' out_dir) must be folders this process can write to, every run file of the
    preset must be valid JSON; partial copies, temporary files and lock-only run folders that a killed
    run left (no live process holds them) go. Returns how many leftovers went."""
    from .experiments import check_results_root, check_run_files, sweep_results

    check_out_dir(out_dir)
    check_results_root(root)
    check_run_files(preset, root)
    return len(clean_debris(out_dir)) + sweep_results(root)


def check_overrides(paths, overrides):
    """ValueError for a parameter no selected notebook declares (papermill would only warn, and run on)."""
    import papermill

    known = set()
    for path in paths:
        known |= set(papermill.inspect_notebook(str(path)))
    unknown = sorted(set(overrides or {}) - known)
    if known and unknown:
        raise ValueError(f"unknown notebook parameter(s) {', '.join(unknown)} (--set); the selected notebooks "
                         f"take: {', '.join(sorted(known))}")


# ---------------------------------------------------------------------------- selecting notebooks

def find_notebooks(notebooks_dir=None, select=None):
    """The source notebooks (sorted by name), or those whose names start with one of `select`.

    A selector is a prefix ("01"), a longer prefix ("02_query") or a full name, with or without
    ".ipynb"; one that matches nothing raises ValueError naming the notebooks there are.
    """
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {notebooks_dir}")
    found = sorted(p for p in notebooks_dir.glob("*.ipynb") if not p.name.startswith((".", "_")))
    if not found:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {notebooks_dir}")
    if not select:
        return found
    chosen = []
    for sel in select:
        stem = sel[: -len(".ipynb")] if sel.endswith(".ipynb") else sel
        matches = [p for p in found if p.stem == stem or p.stem.startswith(stem)]
        if not matches:
            names = ", ".join(p.stem for p in found)
            raise ValueError(f"no notebook in {notebooks_dir} matches {sel!r}; there are: {names}")
        chosen += [p for p in matches if p not in chosen]
    return sorted(chosen)


def parse_sets(items):
    """["key=value", …] -> {key: value}, each value a Python literal (int, float, bool, None, str…).

    Anything that is not a literal is kept as a string, so `--set variant=soft_window` needs no quotes;
    true/false are accepted for True/False.
    """
    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--set expects KEY=VALUE with KEY a Python name (got {item!r})")
        text = text.strip()
        lowered = {"true": True, "false": False, "none": None}
        if text.lower() in lowered:
            out[key] = lowered[text.lower()]
            continue
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def stale_twin(path):
    """A message if the notebook's jupytext twin (same name, .py) holds different code, else None.

    Someone who edits the .py twin in an editor and runs the book would otherwise execute the old
    .ipynb without noticing. Only a warning: `jupytext --sync` decides which side is newer.
    """
    twin = Path(path).with_suffix(".py")
    if not twin.exists():
        return None
    try:
        import jupytext
        import nbformat

        def code(nb):
            return [c.source.strip() for c in nb.cells if c.cell_type == "code"]

        if code(jupytext.read(twin)) != code(nbformat.read(path, as_version=4)):
            return (f"{twin.name} and {Path(path).name} hold different code: run `jupytext --sync "
                    f"{path}` (the newer file wins) if you meant to execute the .py")
    except Exception:  # a twin jupytext cannot read is the notebook author's business, not the runner's
        return None
    return None


# ------------------------------------------------------------------------------ executing many

def stages(paths, pretrained=False):
    """The order notebooks must run in: [01…], [the chapters], [the conclusions].

    Chapter 01 trains the baseline runs the other chapters reuse; a conclusions notebook
    (07_conclusions) reads what the chapters wrote. Notebooks within a stage are independent.
    `pretrained` (every planned run already trained): 01 joins the chapters, which start with the
    last ones (they do the most work).
    """
    paths = list(paths)
    first = [p for p in paths if Path(p).name.startswith("01")]
    last = [p for p in paths if Path(p).stem.endswith("conclusions") and p not in first]
    middle = [p for p in paths if p not in first and p not in last]
    if pretrained:
        first, middle = [], sorted(first + middle, reverse=True)
    return [stage for stage in (first, middle, last) if stage]


def notebook_parameters(path, parameters):
    """A notebook's parameter values for this run: its `parameters` cell's literals, then `parameters`."""
    import papermill

    values = {}
    for name, p in papermill.inspect_notebook(str(path)).items():
        try:
            values[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            pass  # not a literal: the chapters' planners do not need it
    return {**values, **parameters}


def pretrain(paths, parameters, jobs, progress=True):
    """Train every run the notebooks will ask for, `jobs` at a time; returns (seconds, number of runs).

    One pool for all chapters keeps every core busy to the end (chapters trained in parallel
    finish at different times and leave cores idle). Each run trains with its own thread count
    (experiments.BOOK_THREADS, one): two single-thread processes on two cores train about 1.4× faster
    than one with two threads, and a run's numbers do not depend on --jobs.
    """
    from .experiments import ensure_runs
    from .study import chapter_runs

    planned, root, device = {}, None, "auto"
    for path in paths:
        p = notebook_parameters(path, parameters)
        try:
            chapter = chapter_runs(Path(path).stem, p)
        except (KeyError, TypeError):
            continue  # a notebook whose parameters the planner does not know: it trains its own runs
        root, device = p.get("out_dir") or None, p.get("device", "auto")
        planned.update({(r.name, r.seed): r for r in chapter})
    if not planned:
        return 0.0, 0
    t0 = time.perf_counter()
    ensure_runs(list(planned.values()), jobs=jobs, root=root, need_model=True, device=device, progress=progress)
    return time.perf_counter() - t0, len(planned)


def run_notebooks(preset, select=None, jobs=1, kernel=None, overrides=None, notebooks_dir=None, out_dir=None,
                  progress=True, log_output=False, timings=None, executor=None, cell_timeout=None):
    """Execute the selected notebooks with parameters preset=<preset> plus `overrides`.

    The notebooks run in `stages` (01 first, the conclusions last); with jobs > 1, up to `jobs`
    notebooks of a stage run at once, each in its own process with TINYGPT_TORCH_THREADS =
    max(1, cpus // n), n the number running at once (a notebook running alone gets every CPU),
    unless that variable is already set. With jobs > 1 the training runs the chapters plan
    (`study.chapter_runs`) are trained first in one pool of `jobs` processes (`pretrain`), then
    every chapter runs in one parallel stage, the last chapters (which do the most work) first;
    retrain=True leaves the training to the notebooks. A failing notebook does not stop the others.
    Every cell may run `cell_timeout` seconds (default: the preset's, CELL_TIMEOUTS). Returns one
    result dict per notebook, in name order; `timings` (a dict) receives the training stage's seconds
    and run count.
    """
    from tqdm.auto import tqdm

    environ.absolute_path_env()  # kernels start in notebooks/: a relative TINYGPT_DATA_SOURCE must not be read there
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    out_dir = Path(out_dir or default_out_dir(preset))
    if out_dir.resolve() == notebooks_dir.resolve():
        raise ValueError("out_dir must not be the notebooks folder: executed copies would replace the sources")
    paths = find_notebooks(notebooks_dir, select)
    check_overrides(paths, overrides)
    parameters = {"preset": preset, **(overrides or {})}
    timeout = cell_timeout_of(preset, cell_timeout)
    before_run(preset, out_dir, parameters.get("out_dir") or None)
    jobs = max(1, int(jobs))
    user_threads = environ.get(THREADS_ENV)

    def threads_for(n_parallel):
        return user_threads or max(1, cpu_count() // n_parallel)

    for path in paths:
        msg = stale_twin(path)
        if msg:
            print(f"warning: {msg}", file=sys.stderr)

    results = {}
    bar = tqdm(total=len(paths), unit="notebook", desc=f"book run --preset {preset}", disable=not progress,
               file=sys.stderr)

    def done(res):
        results[res["notebook"]] = res
        bar.update(1)
        bar.write(f"{res['notebook']}: {res['status']} in {res['seconds']:.1f} s"
                  + (f" — {res['error']}" if res["error"] else ""), file=sys.stderr)

    kwargs = dict(out_dir=out_dir, parameters=parameters, kernel=kernel, cwd=notebooks_dir, log_output=log_output,
                  cell_timeout=timeout)
    order = stages(paths)
    if (jobs > 1 or executor == "ray") and not parameters.get("retrain"):  # Ray: the cluster trains, not the kernels
        bar.set_postfix_str("training")
        seconds, n_runs = pretrain(paths, parameters, jobs, progress=progress)
        if timings is not None:
            timings.update(training_seconds=round(seconds, 2), training_runs=n_runs)
        if n_runs:  # every chapter's runs exist: 01 need not go first, and the longest chapters start first
            bar.write(f"trained {n_runs} planned runs in {seconds / 60:.1f} min", file=sys.stderr)
            order = stages(paths, pretrained=True)
    try:
        for stage in order:
            n = min(jobs, len(stage))
            if n == 1:
                for path in stage:
                    bar.set_postfix_str(path.stem)
                    done(execute_notebook(path, threads=threads_for(1), **kwargs))
            else:
                _run_parallel(stage, n, threads_for(n), kwargs, done, bar)
    finally:
        bar.close()
    return [results[p.stem] for p in paths if p.stem in results]


def _run_parallel(paths, jobs, threads, kwargs, done, bar):
    from concurrent.futures import as_completed

    from .executors import pinned_pool, submit_interruptible

    bar.set_postfix_str(f"{', '.join(p.stem[:2] for p in paths)}: {jobs} at a time")
    with pinned_pool(jobs) as pool:  # Ctrl-C: the workers stop their kernels and remove their partial copies
        futures = {submit_interruptible(pool, execute_notebook, p, threads=threads, **kwargs): p for p in paths}
        for fut in as_completed(futures):
            path = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # the worker process itself died
                res = dict(notebook=path.stem, status="FAILED", seconds=0.0, started_at=now(),
                           error=first_line(e), output=None, kernel=kwargs.get("kernel"))
            done(res)


def run(preset, select=None, jobs=1, kernel=None, overrides=None, notebooks_dir=None, out_dir=None,
        progress=True, log_output=False, executor=None, gpus_per_run=None, cell_timeout=None):
    """`tinygpt book run`: execute, print the summary table, write the run log. 0 only if all passed.

    Without out_dir, a preset other than the published book's goes to build/book-<preset>/, with the
    book's configuration beside it (`tinygpt book build --book-dir build/book-<preset>` renders it).
    executor/gpus_per_run (executors.py) reach every ensure_runs, the notebooks' too, as environment variables.
    """
    from .executors import EXECUTOR_ENV, GPUS_ENV
    if out_dir is None and preset != published_preset(BOOK_DIR):
        out_dir = default_out_dir(preset)
        print(f"preset {preset} is not the published book's ({published_preset(BOOK_DIR)}): executed copies go to "
              f"{out_dir} (pass --out-dir {BOOK_DIR} to publish them)", file=sys.stderr)
        check_out_dir(out_dir, option="the output folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        for p in BOOK_DIR.glob("*"):  # _config.yml, _toc.yml, intro.md, references.bib: a buildable book
            if p.is_file() and p.suffix in (".yml", ".md", ".bib"):
                shutil.copy2(p, out_dir / p.name)
    out_dir = Path(out_dir or BOOK_DIR)
    timings, t0 = {}, time.perf_counter()
    with env_vars(**{EXECUTOR_ENV: executor, GPUS_ENV: gpus_per_run}):
        results = run_notebooks(preset, select=select, jobs=jobs, kernel=kernel, overrides=overrides,
                                notebooks_dir=notebooks_dir, out_dir=out_dir, progress=progress,
                                log_output=log_output, timings=timings, executor=executor, cell_timeout=cell_timeout)
    timings["wall_seconds"] = round(time.perf_counter() - t0, 2)
    log = write_run_log(results, preset, out_dir=out_dir, overrides=overrides, jobs=jobs, timings=timings)
    if "training_seconds" in timings:
        print(f"training stage: {timings['training_runs']} runs in {timings['training_seconds'] / 60:.1f} min")
    print(f"wall clock: {timings['wall_seconds'] / 60:.1f} min")
    print(format_summary(results))
    print(f"executed copies in {out_dir}; timings in {log}")
    return 0 if results and all(r["status"] == "ok" for r in results) else 1


