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
    """The names the README and the notebooks use, each the object of its home module, train() with its arguments."""
    import importlib
    import inspect

    from tinygpt import train
    homes = {"GPT": "model", "GPTConfig": "model", "make_config": "presets", "VARIANTS": "variants",
             "load": "checkpoint", "capture": "capture"}
    for name, home in homes.items():
        assert getattr(tinygpt, name) is getattr(importlib.import_module(f"tinygpt.{home}"), name), name
    assert list(inspect.signature(train.train).parameters) == ["cfg", "out_dir", "resume", "progress", "stop_at", "log"]


def test_lab_finds_the_repository(monkeypatch):
    from tinygpt.book.experiments import repo_root, results_root
    from tinygpt.book.runner import BOOK_DIR, NOTEBOOKS_DIR
    monkeypatch.delenv("TINYGPT_RESULTS", raising=False)
    assert (repo_root() / "pyproject.toml").exists()
    assert results_root() == repo_root() / "results"
    assert NOTEBOOKS_DIR == repo_root() / "notebooks" and BOOK_DIR == repo_root() / "book"


def import_graph(package=CORE):
    """{module: modules of the package it imports}, lazy imports inside functions included; `from . import x`
    is an edge to module x when x is one, else to the package's __init__ (which imports its own modules)."""
    def name(path):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(p): p for p in package.rglob("*.py")}
    graph = {}
    for mod, path in modules.items():
        here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + [node.module] if node.module else
                                here[:len(here) - node.level + 1]) if node.level else node.module
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
        graph[mod] = {e for e in edges if e in modules and e != mod}
    return graph


def cycles(graph):
    """Every import cycle found by a depth-first search, as [a, b, …, a]."""
    found, state, stack = [], {}, []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = "done"

    for u in sorted(graph):
        if u not in state:
            visit(u)
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert graph["tinygpt.book.experiments"] >= {"tinygpt.book.executors", "tinygpt.files"}
    assert not cycles(graph), cycles(graph)


def test_the_cycle_check_sees_a_lazy_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("from .b import g\ndef f():\n    pass\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from .a import f\n")
    (pkg / "sub" / "c.py").write_text("from . import nothing_of_the_kind\n")  # the package itself: sub -> a -> …
    graph = import_graph(pkg)
    assert graph["pkg.sub.c"] == {"pkg.sub"}
    assert cycles(graph) == [["pkg.sub.a", "pkg.sub.b", "pkg.sub.a"]]


def test_modules_stay_nanogpt_sized():
    long = {str(p.relative_to(CORE)): n for p in CORE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, long
