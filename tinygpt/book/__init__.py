"""The book's lab: what runs the study and draws it, on top of the core model in tinygpt/.

    study        which runs each chapter needs (one source of truth for notebooks and planner)
    experiments  the run store: load-or-train, locked, resumable runs in results/<preset>/
    results      finished runs as tables; Welch intervals and verdicts against the baseline
    analysis, probes, plots, widgets, notebook   what the chapters measure and draw
    runner       `tinygpt book run`: the notebooks in stages, the parallel training stage, the run log
    execute      one notebook through papermill: cell timeouts, a watch on the kernel, atomic copies
    runlog       what `book run` records: book/_run_log.json and its summary table
    site         `tinygpt book build`: Jupyter Book 1.x, offline
    sphinx_ext   the Sphinx extension the site loads (MathML, favicon)
    cli          the `tinygpt book` sub-commands

Nothing in the core (tinygpt/*.py) imports from here; tests/test_layout.py checks it.
"""

from .execute import THREADS_ENV, execute_notebook
from .runner import BOOK_DIR, NOTEBOOKS_DIR, REPO_ROOT, find_notebooks, parse_sets, run, run_notebooks, stages
from .site import build

__all__ = ["BOOK_DIR", "NOTEBOOKS_DIR", "REPO_ROOT", "THREADS_ENV", "build", "execute_notebook", "find_notebooks",
           "parse_sets", "run", "run_notebooks", "stages"]
