#!/usr/bin/env python
"""Bring what a device call returned into the repository: runs into results/<preset>/, pages into book/<preset>/.

    python scripts/import_device_book.py FILES_AT               # the folder the device tool fetched into
    python scripts/import_device_book.py book.tar.gz results.tar.gz --dry-run

Accepts `scripts/device_book.sh`'s `book.tar.gz` and `results.tar.gz`, or folders laid out like their
contents (`book/…ipynb`, `results/<preset>/<tag>/seed<k>/*.json`). Runs are copied byte for byte. A run
already committed stays as first measured (every chunk retrains the baseline, and GPU kernels reproduce a
run only to rounding): the device's differing value is listed beside the committed one and nothing is
copied over it, unless --overwrite. Executed pages at a preset other than the published book's go to
book/<preset>/ with their run log; their papermill metadata gets paths relative to the repository (the
device's absolute paths say nothing to a reader). Smoke pages and runs are a check, never imported.
"""

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = "cpu"  # book/ itself holds the published preset's pages; `tinygpt book run` writes those


def unpack(sources, into):
    """Every source (a .tar.gz or a folder) laid side by side in `into`; returns the folders to read."""
    roots = []
    for i, src in enumerate(map(Path, sources)):
        if src.is_dir():
            roots.append(src)
        elif src.name.endswith((".tar.gz", ".tgz")):
            dest = into / f"{i}"
            with tarfile.open(src) as tar:
                tar.extractall(dest, filter="data")
            roots.append(dest)
        else:
            sys.exit(f"import_device_book: {src} is neither a folder nor a .tar.gz")
    return roots


def run_files(root):
    """(preset, path relative to results/, file) for every run JSON under root (results/… or the root itself)."""
    for f in sorted(root.rglob("*.json")):
        parts = f.relative_to(root).parts
        if "results" in parts:
            parts = parts[parts.index("results") + 1:]
        if len(parts) == 4 and parts[2].startswith("seed") and parts[0] != "smoke":
            yield parts[0], Path(*parts), f


def pages(root):
    """(preset, notebook path) of every executed page under root (smoke pages and failed copies left out)."""
    for nb in sorted(root.rglob("*.ipynb")):
        if nb.name.startswith(".") or nb.name.endswith(".failed.ipynb") or "smoke" in nb.parts:
            continue
        meta = json.loads(nb.read_text(encoding="utf-8")).get("metadata", {})
        preset = (meta.get("tinygpt_run") or {}).get("preset") or meta.get("papermill", {}).get("parameters", {}).get(
            "preset")
        if preset and preset != "smoke":
            yield preset, nb


def _headline(path):
    """The number a reader compares two copies of a run by: its whole-split loss (or the file's size)."""
    try:
        m = json.loads(Path(path).read_text(encoding="utf-8"))
        return f"val_loss_full {m['val_loss_full']:.4f}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{Path(path).stat().st_size} bytes"


def relative_paths(nb_path, preset):
    """papermill's input and output paths as the repository names them."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    pm = nb.get("metadata", {}).get("papermill")
    if pm:
        pm["input_path"] = f"notebooks/{nb_path.name}"
        pm["output_path"] = f"book/{preset}/{nb_path.name}" if preset != PUBLISHED else f"book/{nb_path.name}"
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", help="the device call's files: a folder, or book.tar.gz / results.tar.gz")
    ap.add_argument("--repo", default=str(REPO), help="the repository to import into (default: this one)")
    ap.add_argument("--overwrite", action="store_true", help="replace committed run files that differ")
    ap.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
    args = ap.parse_args(argv)
    repo = Path(args.repo)
    with tempfile.TemporaryDirectory() as tmp:
        roots = unpack(args.sources, Path(tmp))
        conflicts, copied = [], []
        for root in roots:
            for _preset, rel, f in run_files(root):
                dest = repo / "results" / rel
                if dest.exists() and dest.read_bytes() != f.read_bytes() and not args.overwrite:
                    conflicts.append((dest, f))
                    continue
                copied.append((f, dest, None))
            for preset, nb in pages(root):
                folder = repo / "book" / (preset if preset != PUBLISHED else "")
                copied.append((nb, folder / nb.name, relative_paths(nb, preset)))
                log = nb.parent / "_run_log.json"
                if log.exists():
                    copied.append((log, folder / "_run_log.json", None))
        if conflicts:
            print("kept as committed (the device's run differs; --overwrite replaces it):")
            for dest, f in conflicts:
                print(f"  {dest.relative_to(repo)}: {_headline(dest)} committed, {_headline(f)} on the device")
        for src, dest, text in dict(((d, (s, d, t)) for s, d, t in copied)).values():
            print(f"{'would copy' if args.dry_run else 'copy'} {src.name} -> {dest.relative_to(repo)}")
            if args.dry_run:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if text is None:
                shutil.copyfile(src, dest)
            else:
                dest.write_text(text, encoding="utf-8")
        if not copied and not conflicts:
            sys.exit("import_device_book: found no runs and no executed pages in " + ", ".join(args.sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
