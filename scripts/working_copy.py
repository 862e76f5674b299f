"""`make lab`'s first step: copy the source notebooks into the git-ignored work/ folder, once.

The copies are what a reader edits and runs in JupyterLab: they are not paired with .py twins (their jupytext
pairing is removed), a copy the reader already has is never overwritten, and the committed results are copied
into work/results/ so that finished runs load instead of retraining, while any new training lands there too.
"""

import shutil
import sys
from pathlib import Path

import nbformat

from tinygpt.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]


def _copy(src, dst):
    """shutil's copy, but whole or not at all: a copy cut short by Ctrl-C would be kept as the reader's own."""
    atomic_write(dst, Path(src).read_bytes())
    shutil.copystat(src, dst)


def main(dest=ROOT / "work"):
    dest.mkdir(exist_ok=True)
    for src in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out = dest / src.name
        if out.exists():
            print(f"kept   {out.relative_to(ROOT)} (yours; delete it to start again from {src.relative_to(ROOT)})")
            continue
        nb = nbformat.read(src, as_version=4)
        nb.metadata.get("jupytext", {}).pop("formats", None)  # no .py twin for a working copy
        atomic_write(out, (nbformat.writes(nb).rstrip("\n") + "\n").encode())  # as nbformat.write ends it
        print(f"copied {out.relative_to(ROOT)}")
    results = dest / "results"
    if (ROOT / "results").is_dir():
        shutil.copytree(ROOT / "results", results, dirs_exist_ok=True, copy_function=_copy,
                        ignore=lambda d, names: [n for n in names if (results / Path(d).relative_to(ROOT / "results")
                                                                      / n).is_file()])
    print(f"results: {results.relative_to(ROOT)} (TINYGPT_RESULTS); kernel: Python 3 (ipykernel) from {sys.prefix}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "work")
