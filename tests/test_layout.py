"""The folders show the architecture: the core (tinygpt/*.py) never imports the book's lab (tinygpt/book/)."""

import ast
from pathlib import Path

import tinygpt

CORE = Path(tinygpt.__file__).parent
# cli.py is the command-line shell: it wires the core's commands and the lab's `book` command together
ENTRY_POINTS = {"cli.py", "__main__.py"}


def lab_imports(path):
    """Modules of tinygpt.book that `path` imports, at any depth (lazy imports inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            mod = ("." * node.level) + (node.module or "")
            names = [a.name for a in node.names]
            if mod in (".book", "tinygpt.book") or mod.startswith((".book.", "tinygpt.book.")) or \
                    (mod in (".", "tinygpt") and "book" in names):
                found.append(mod)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("tinygpt.book")]
    return found


def test_core_does_not_import_the_lab():
    core = [p for p in CORE.glob("*.py") if p.name not in ENTRY_POINTS]
    assert len(core) >= 10
    bad = {p.name: lab_imports(p) for p in core if lab_imports(p)}
    assert not bad, f"core modules import the lab: {bad}"


def test_the_check_sees_an_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from .book.study import runs\n    from . import book\n")
    assert lab_imports(p) == [".book.study", "."]


def test_public_api_stays():
    for name in ("GPT", "GPTConfig", "make_config", "VARIANTS", "capture", "load"):
        assert hasattr(tinygpt, name)
    from tinygpt.train import train
    assert callable(train)


def test_lab_finds_the_repository(monkeypatch):
    from tinygpt.book.experiments import repo_root, results_root
    from tinygpt.book.runner import BOOK_DIR, NOTEBOOKS_DIR
    monkeypatch.delenv("TINYGPT_RESULTS", raising=False)
    assert (repo_root() / "pyproject.toml").exists()
    assert results_root() == repo_root() / "results"
    assert NOTEBOOKS_DIR == repo_root() / "notebooks" and BOOK_DIR == repo_root() / "book"
