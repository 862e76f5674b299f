"""`tinygpt book build`: render the executed notebooks with Jupyter Book 1.x, offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

from .runner import BOOK_DIR


def jupyter_book_command():
    """How to call Jupyter Book 1.x with this interpreter (its package has no __main__)."""
    script = Path(sys.executable).parent / ("jupyter-book.exe" if os.name == "nt" else "jupyter-book")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; "
                                  "main()"]


def missing_chapters(book_dir=None):
    """Files the book's _toc.yml names that are not in the book folder (chapters not executed yet)."""
    import yaml

    book_dir = Path(book_dir or BOOK_DIR)
    toc = yaml.safe_load((book_dir / "_toc.yml").read_text(encoding="utf-8")) or {}
    names = [toc.get("root")] if toc.get("root") else []

    def walk(entries):
        for entry in entries or ():
            if isinstance(entry, dict):
                if entry.get("file"):
                    names.append(entry["file"])
                walk(entry.get("chapters") or entry.get("sections") or [])
                for part in entry.get("parts") or []:
                    walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    exts = (".ipynb", ".md", ".rst", ".py")
    return [n for n in names if not any((book_dir / (n + e)).exists() or (book_dir / n).is_file() for e in exts)]


def chapter_presets(book_dir=None):
    """{chapter: preset} of the executed notebooks in one book folder (papermill records the parameters)."""
    out = {}
    for path in sorted(Path(book_dir or BOOK_DIR).glob("*.ipynb")):
        if path.name.startswith((".", "_")) or path.name.endswith(".failed.ipynb"):
            continue
        try:
            preset = json.loads(path.read_text(encoding="utf-8"))["metadata"]["papermill"]["parameters"]["preset"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not executed by papermill: nothing to compare
        out[path.stem] = preset
    return out


def scale_folders(book_dir=None):
    """{folder: {chapter: preset}}: the book folder itself ("") and each sub-folder named after a preset.

    The book shows two scales on purpose: book/ holds the published preset's chapters (what `book run`
    writes) and book/<preset>/ the same chapters executed elsewhere at that preset (book/gpu/: on a lent
    GPU, brought back by scripts/import_device_book.py).
    """
    from ..presets import PRESETS

    book_dir = Path(book_dir or BOOK_DIR)
    out = {"": chapter_presets(book_dir)}
    for sub in sorted(p for p in book_dir.iterdir() if p.is_dir() and p.name in PRESETS):
        out[sub.name] = chapter_presets(sub)
    return out


def preset_problem(book_dir=None):
    """Why the book folder must not be rendered, else None: a folder whose chapters mix presets, a sub-folder
    whose chapters are not its own preset, or smoke chapters anywhere in the published book."""
    book_dir = Path(book_dir or BOOK_DIR).resolve()
    published = book_dir == Path(BOOK_DIR).resolve()
    for folder, presets in scale_folders(book_dir).items():
        where = book_dir / folder
        by_preset = {}
        for chapter, preset in presets.items():
            by_preset.setdefault(preset, []).append(chapter)
        if len(by_preset) > 1:
            mix = "; ".join(f"{p}: {', '.join(c)}" for p, c in sorted(by_preset.items()))
            return (f"the chapters in {where} were executed at different presets ({mix}); run the odd ones again "
                    "with `tinygpt book run --preset <the book's preset> --notebooks ...`")
        if folder and set(by_preset) - {folder}:
            return (f"{where} holds chapters executed at the {', '.join(by_preset)} preset; a sub-folder of the book "
                    f"holds only chapters of the preset it is named after ({folder})")
        if "smoke" in by_preset and published:
            return (f"the chapters in {where} were executed at the smoke preset, which is a check, not results; "
                    "run `tinygpt book run --preset cpu` (or gpu) before publishing")
    return None


def _toc_without(book_dir, missing):
    """A copy of the book's _toc.yml without the files that are missing (jupyter-book stops on them)."""
    import yaml

    toc = yaml.safe_load((book_dir / "_toc.yml").read_text(encoding="utf-8")) or {}

    def keep(entries):
        out = []
        for entry in entries or ():
            if isinstance(entry, dict) and entry.get("file") in missing:
                continue
            if isinstance(entry, dict) and entry.get("chapters") is not None:
                entry = {**entry, "chapters": keep(entry["chapters"])}
                if not entry["chapters"] and "file" not in entry:
                    continue
            out.append(entry)
        return out

    toc["chapters"] = keep(toc.get("chapters"))
    if "parts" in toc:
        toc["parts"] = keep(toc["parts"])
    if not toc["chapters"]:
        del toc["chapters"]
    path = book_dir / "_build" / "_toc.present.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")
    return path


def build(book_dir=None, all_pages=False, strict=False, quiet=False):
    """`tinygpt book build`: render book_dir with Jupyter Book into book_dir/_build/html (no execution).

    Returns jupyter-book's exit code (non-zero on failure, and with strict on any warning).
    """
    book_dir = Path(book_dir or BOOK_DIR).resolve()
    if not (book_dir / "_config.yml").exists() or not (book_dir / "_toc.yml").exists():
        raise FileNotFoundError(f"{book_dir} has no _config.yml/_toc.yml: not a Jupyter Book folder")
    problem = preset_problem(book_dir)
    if problem:
        print(f"tinygpt book build: refused: {problem}", file=sys.stderr)
        return 2
    missing = missing_chapters(book_dir)
    if missing:
        print(f"warning: not in {book_dir} yet (left out of the site): {', '.join(missing)}; executed chapters "
              "come from `tinygpt book run`", file=sys.stderr)
    cmd = jupyter_book_command() + ["build", str(book_dir), "--builder", "html"]
    if missing:
        cmd += ["--toc", str(_toc_without(book_dir, set(missing)))]
    cmd += ["--all"] * all_pages + ["-W", "--keep-going"] * strict + ["-q"] * quiet
    rc = subprocess.run(cmd).returncode
    index = book_dir / "_build" / "html" / "index.html"
    if rc == 0 and index.exists():
        print(f"the book is at {index}  (serve it: python -m http.server -d {index.parent})")
        return 0
    print(f"tinygpt book build: jupyter-book failed (exit {rc}); see its messages above", file=sys.stderr)
    return rc or 1


