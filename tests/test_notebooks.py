"""The book's chapters: stripped sources in sync with their twins, checked parameters, and every
chapter executed end to end with papermill at the smoke preset (each within the 60 s target)."""

import ast
import json
import os
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SMOKE_SECONDS = 150  # a smoke chapter takes 10-50 s on a quiet 2-core VM; this only catches a preset that grew


def test_there_are_seven_chapters():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:6] == ["01_baseline", "02_query_windows", "03_structure_gating", "04_structure_embeddings",
                         "05_network_shape", "06_why_it_matches"]
    assert "07_conclusions" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} carries outputs: strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_its_py_twin(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{path.name} has no jupytext twin {twin.name}"
    a, b = nbformat.read(path, as_version=4), jupytext.read(twin)
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]
    assert cells(a) == cells(b), f"{path.name} and {twin.name} differ: run `jupytext --sync {twin}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_holds_commented_literals(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code.index(tagged[0]) == 1, "the parameters cell comes right after the environment cell"
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip()]
    for stmt in ast.parse(tagged[0].source).body:
        assert isinstance(stmt, ast.Assign), f"only assignments in the parameters cell: {ast.unparse(stmt)}"
        ast.literal_eval(stmt.value)  # raises for anything but a literal
    assert all("#" in ln for ln in lines), "every parameter needs a comment"
    assert {"preset", "out_dir"} <= {s.targets[0].id for s in ast.parse(tagged[0].source).body}


def test_chapter_six_is_prose_and_figures():
    """Chapter 6's analysis lives in the package: at most 200 lines of code in the notebook, and at most
    120 of them shown on the page (the rest under hide-input)."""
    nb = nbformat.read(ROOT / "notebooks" / "06_why_it_matches.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    lines = lambda cells: sum(1 for c in cells for ln in c.source.splitlines() if ln.strip())
    hidden = {"hide-input", "remove-input", "remove-cell"}
    shown = [c for c in code if not hidden & set(c.metadata.get("tags", []))]
    assert lines(code) <= 200, f"chapter 6 holds {lines(code)} lines of code: move analysis into tinygpt/"
    assert lines(shown) <= 120, f"chapter 6 shows {lines(shown)} lines of code: hide plotting cells"


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """Execute every chapter in order at the smoke preset into a temporary book and results folder."""
    from tinygpt.book import run_notebooks
    if not os.environ.get("TINYGPT_DATA_SOURCE") and not (ROOT / "data" / "shakespeare_char").exists():
        pytest.skip("no raw data: set TINYGPT_DATA_SOURCE")
    tmp = tmp_path_factory.mktemp("book")
    results = run_notebooks("smoke", overrides={"out_dir": str(tmp / "results")}, out_dir=tmp / "book",
                            progress=False)
    return tmp, {r["notebook"]: r for r in results}


@pytest.mark.parametrize("name", [p.stem for p in NOTEBOOKS])
def test_chapter_executes_at_smoke_preset(smoke_book, name):
    tmp, results = smoke_book
    r = results[name]
    assert r["status"] == "ok", f"{name} failed: {r['error']}"
    assert r["seconds"] <= SMOKE_SECONDS, f"{name} took {r['seconds']:.0f} s at the smoke preset"
    nb = nbformat.read(tmp / "book" / f"{name}.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew no figure"
    summary = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert summary, f"{name} has no computed summary"


def test_smoke_runs_wrote_results(smoke_book):
    tmp, _ = smoke_book
    runs = list((tmp / "results" / "smoke").glob("*/seed*/metrics.json"))
    assert len(runs) >= 20
    summary = json.loads((tmp / "results" / "smoke" / "summary.json").read_text())
    assert summary["h1"]["verdict"] in ("supported", "refuted", "inconclusive")
    assert summary["h2"]["verdict"] in ("supported", "refuted", "inconclusive")
    h3 = summary["h3"]  # the regime: budgets at smoke are 1× and 2×, so every variant has a fitted slope
    assert h3["verdict"] in ("supported", "refuted", "inconclusive")
    assert {p["budget"] for p in h3["points"]} == {1.0, 2.0}
    assert set(h3["fits"]) == {"soft_window", "hard_window", "alibi"}
    assert all(f["slope_lo"] <= f["slope"] <= f["slope_hi"] for f in h3["fits"].values())
    assert {c["block_size"] for c in h3["context"]} == {32, 128}
    assert set(summary["h1"]["by_regime"]) >= {"1×", "2×"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_unknown_preset_fails_in_the_first_cells(path, tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"), parameters={"preset": "nosuch"},
                            cwd=str(path.parent), progress_bar=False)
    assert "preset='nosuch' is unknown" in str(err.value) and "valid presets" in str(err.value)
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = next(i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs))
    assert failed <= 3, f"the bad parameter should fail the first cells, not cell {failed}"


def test_unknown_variant_fails_with_the_valid_names(tmp_path):
    import papermill as pm
    path = ROOT / "notebooks" / "02_query_windows.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"),
                            parameters={"preset": "smoke", "variants": ["soft_windw"]}, progress_bar=False)
    assert "soft_windw" in str(err.value) and "soft_window" in str(err.value)


PLANNED = ["01_baseline", "02_query_windows", "03_structure_gating", "04_structure_embeddings", "05_network_shape",
           "06_why_it_matches"]


@pytest.mark.parametrize("name", PLANNED)
def test_chapter_takes_its_runs_from_the_planner(name):
    """The run list is written once, in study.chapter_runs: the notebook calls it with its own name (directly, or
    through notebook.comparison, which chapters 2-4 share)."""
    code = "\n".join(c.source for c in jupytext.read(ROOT / "notebooks" / f"{name}.py").cells if c.cell_type == "code")
    calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)
             and ast.unparse(n.func) in ("study.chapter_runs", "notebook.comparison")]
    assert calls and all(ast.literal_eval(c.args[0]) == name for c in calls), \
        f"{name} must get its runs from study.chapter_runs({name!r}, ...)"
    assert "study.runs(" not in code and "Run(" not in code, f"{name} builds a run list of its own"


def test_smoke_runs_are_exactly_the_planned_ones(smoke_book):
    """Every run the planner names for a chapter was trained, and nothing else but 06's data-size runs."""
    from tinygpt.book import study
    from tinygpt.book.runner import notebook_parameters
    tmp, _ = smoke_book
    results = tmp / "results" / "smoke"
    made = {(p.parent.parent.name, p.parent.name) for p in results.glob("*/seed*/metrics.json")}
    planned = set()
    for name in PLANNED:
        params = notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb", {"preset": "smoke"})
        planned |= {(r.name, f"seed{r.seed}") for r in study.chapter_runs(name, params)}
    assert planned <= made, f"planned but not trained: {sorted(planned - made)}"
    extra = {t for t, _ in made - planned}
    assert all(t.split("+")[1] in study.DATA_SIZES for t in extra), f"trained but never planned: {sorted(extra)}"
