"""`tinygpt book run` and `tinygpt book build`: the sub-commands and their options."""

import argparse

from .runner import BOOK_DIR, NOTEBOOKS_DIR, parse_sets, run
from .site import build


def add_parser(subparsers, handler):
    """Add `book run` and `book build` to tinygpt's sub-commands; `handler(args)` calls main(args)."""
    book = subparsers.add_parser(
        "book", help="execute the book's notebooks (papermill) and render the site (Jupyter Book)",
        description="The book is notebooks/*.ipynb executed into book/*.ipynb (`book run`), then rendered\n"
                    "into book/_build/html (`book build`). Rendering never executes anything.",
        epilog="examples:\n"
               "  tinygpt book run --preset smoke              # every notebook, in seconds (a check)\n"
               "  tinygpt book run --preset cpu --jobs 2       # the book on a laptop\n"
               "  tinygpt book run --preset gpu --notebooks 02 03 --set retrain=True\n"
               "  tinygpt book build                           # then open book/_build/html/index.html\n"
               "`tinygpt book run --help` and `tinygpt book build --help` describe every option.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    book.set_defaults(fn=handler)
    sub = book.add_subparsers(dest="book_command", metavar="{run,build}", required=True)

    r = sub.add_parser(
        "run", help="execute notebooks into executed copies in book/",
        description="Execute the source notebooks in notebooks/ with papermill, passing preset=PRESET and any "
                    "--set values as parameters, into executed copies book/<name>.ipynb (the sources are never "
                    "modified; a failed notebook goes to <name>.failed.ipynb and never replaces a good copy; a "
                    "preset other than the published book's goes to build/book-PRESET/). Kernels run in "
                    "notebooks/. Prints a summary table and records the timings in the folder's _run_log.json. "
                    "Exit status 0 only if every notebook ran without error.",
    )
    try:
        from ..presets import PRESETS

        preset_names = list(PRESETS)
    except ImportError:
        preset_names = None
    r.add_argument("--preset", required=True, choices=preset_names, metavar="PRESET",
                   help="the training preset the notebooks use: smoke (seconds, for tests), cpu (a laptop) or gpu "
                        "(nanoGPT's full configuration); required")
    r.add_argument("--notebooks", nargs="+", metavar="NAME",
                   help="run only these notebooks, by prefix or name: 01 03, 02_query_windows (default: all)")
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="parallel work: first every training run the chapters plan, N processes at a time (one "
                        "torch thread each, the runs' own count, so results do not depend on N), then up to N "
                        "notebooks at once (TINYGPT_TORCH_THREADS = CPUs // N for their kernels), "
                        "a conclusions notebook last (it reads theirs). With N = 1 (default) or --set retrain=True "
                        "each notebook trains its own runs, 01 first (the others reuse its baseline)")
    r.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where training runs execute: local (default; a process pool of --jobs, one GPU per process "
                        "where there are GPUs) or ray (the cluster at $RAY_ADDRESS, else a local Ray; needs the "
                        "[cluster] extra and a results folder every node shares)")
    r.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                   help="with --executor ray: GPUs each run reserves; 0.25 packs four runs per GPU (default: 1 where "
                        "the cluster has GPUs, else 0)")
    r.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="seconds any one cell may run before its notebook fails, naming the cell (default: the "
                        "preset's, far above its longest cell: smoke 900, cpu and gpu 43200). A kernel that stops "
                        "answering is found within minutes regardless, and its notebook run once more")
    r.add_argument("--kernel", metavar="NAME",
                   help="Jupyter kernel to execute with (default: each notebook's own kernelspec, else python3)")
    r.add_argument("--out-dir", metavar="DIR",
                   help="where the executed copies go (default: the repository's book/ at the published book's "
                        "preset, cpu; build/book-PRESET/ at any other, so that a smoke run never replaces the book)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="another parameter for every notebook, as a Python literal (strings need no quotes; "
                        "true/false work): --set retrain=True --set max_iters=500 (repeatable)")
    r.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), metavar="DIR",
                   help="where the source notebooks are; also the kernels' working directory (default: the "
                        "repository's notebooks/)")
    r.add_argument("--log-output", action="store_true", help="stream the notebooks' outputs to this terminal")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    b = sub.add_parser(
        "build", help="render the executed notebooks into an HTML site (executes nothing)",
        description="Render the book folder with Jupyter Book 1.x (execute_notebooks: off, offline) into "
                    "<book-dir>/_build/html and print where index.html is. Chapters not executed yet are left "
                    "out with a warning. Exit status non-zero if the build fails.",
    )
    b.add_argument("--book-dir", default=str(BOOK_DIR), metavar="DIR",
                   help="the book folder, with _config.yml and _toc.yml (default: the repository's book/)")
    b.add_argument("--all", action="store_true", dest="all_pages", help="rebuild every page, not only changed ones")
    b.add_argument("--strict", action="store_true", help="fail on any Sphinx warning (jupyter-book -W --keep-going)")
    b.add_argument("-q", "--quiet", action="store_true", help="fewer messages from Sphinx")
    return book


def main(args):
    """Dispatch parsed `tinygpt book …` arguments; returns the exit code."""
    if args.book_command == "run":
        if args.jobs < 1:
            raise ValueError(f"--jobs must be ≥ 1 (got {args.jobs})")
        if args.gpus_per_run is not None and (args.executor != "ray" or args.gpus_per_run < 0):
            raise ValueError("--gpus-per-run needs --executor ray and a value ≥ 0")
        return run(args.preset, select=args.notebooks, jobs=args.jobs, kernel=args.kernel,
                   overrides=parse_sets(args.set), notebooks_dir=args.notebooks_dir, out_dir=args.out_dir,
                   progress=not args.no_progress, log_output=args.log_output, executor=args.executor,
                   gpus_per_run=args.gpus_per_run, cell_timeout=args.cell_timeout)
    if args.book_command == "build":
        return build(args.book_dir, all_pages=args.all_pages, strict=args.strict, quiet=args.quiet)
    raise ValueError(f"unknown book command {args.book_command!r}")


