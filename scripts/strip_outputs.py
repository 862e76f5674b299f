"""Git clean filter for notebooks/*.ipynb: outputs, execution counts and run-time metadata never reach the index.

Reads a notebook on stdin, writes it on stdout stripped, in the layout jupytext and nbformat write (so a stripped
source notebook passes through unchanged). Installed by `make install` (see .gitattributes):

    git config filter.strip-outputs.clean "python scripts/strip_outputs.py"
    git config filter.strip-outputs.smudge cat
"""

import sys

import nbformat

RUN_TIME_KEYS = ("execution", "ExecuteTime", "papermill", "collapsed", "scrolled")


def strip(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in RUN_TIME_KEYS:
            cell.metadata.pop(key, None)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    return nb


def main():
    text = sys.stdin.read()
    try:
        nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    except Exception:  # not a notebook git can parse: pass it through untouched rather than lose it
        sys.stdout.write(text)
        return
    sys.stdout.write(nbformat.writes(strip(nb)) + "\n")


if __name__ == "__main__":
    main()
