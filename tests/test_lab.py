"""JupyterLab without dirtying the repository: the git clean filter strips what a saved notebook carries, `make lab`'s
working copies are unpaired and git-ignored, and the source notebooks open clean (language_info present)."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STRIP = ROOT / "scripts" / "strip_outputs.py"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _strip(text):
    return subprocess.run([sys.executable, str(STRIP)], input=text, capture_output=True, text=True,
                          check=True).stdout


def _as_saved_by_lab(src):
    """A source notebook as JupyterLab saves it after Run All: outputs, counts, widget state, timing metadata."""
    nb = nbformat.read(src, as_version=4)
    for k, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = k + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="trained\n")]
        cell.metadata["execution"] = {"iopub.status.busy": "2026-11-29T10:00:00Z"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nbformat.writes(nb) + "\n"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_clean_filter_leaves_a_source_notebook_unchanged(path):
    text = path.read_text()
    assert _strip(text) == text, "a stripped source must pass the filter byte for byte (git status stays clean)"


def test_the_clean_filter_strips_a_saved_notebook():
    src = NOTEBOOKS[0]
    saved = _as_saved_by_lab(src)
    assert '"outputs": []' not in saved.split('"cell_type": "code"')[1][:2000]
    assert _strip(saved) == src.read_text()


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_git_add_through_the_filter_commits_no_outputs(tmp_path):
    """What `git add` stores for notebooks/*.ipynb with the filter configured as `make install` does."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    nb = repo / "notebooks" / NOTEBOOKS[0].name
    nb.write_text(_as_saved_by_lab(NOTEBOOKS[0]))
    git = ["git", "-C", str(repo), "-c", f"filter.strip-outputs.clean={sys.executable} {STRIP}",
           "-c", "filter.strip-outputs.smudge=cat"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    staged = subprocess.run([*git, "show", f":notebooks/{nb.name}"], capture_output=True, text=True, check=True)
    stored = json.loads(staged.stdout)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in stored["cells"])
    assert "widgets" not in stored["metadata"]
    assert staged.stdout == NOTEBOOKS[0].read_text()


def test_working_copies_are_unpaired_kept_and_ignored(tmp_path, monkeypatch):
    wc = _load("working_copy")
    # a small stand-in repository: two notebooks and one result
    (tmp_path / "notebooks").mkdir()
    for src in NOTEBOOKS[:2]:
        shutil.copy(src, tmp_path / "notebooks" / src.name)
    (tmp_path / "results" / "cpu" / "baseline" / "seed0").mkdir(parents=True)
    (tmp_path / "results" / "cpu" / "baseline" / "seed0" / "metrics.json").write_text('{"val_loss_full": 1.9}')
    monkeypatch.setattr(wc, "ROOT", tmp_path)
    work = tmp_path / "work"
    wc.main(work)
    copies = sorted(work.glob("*.ipynb"))
    assert [p.name for p in copies] == [p.name for p in NOTEBOOKS[:2]]
    assert all("formats" not in nbformat.read(p, as_version=4).metadata.get("jupytext", {}) for p in copies)
    assert (work / "results" / "cpu" / "baseline" / "seed0" / "metrics.json").exists()
    # the reader's edits and runs survive a second `make lab`
    copies[0].write_text(copies[0].read_text().replace('preset = \\"cpu\\"', 'preset = \\"smoke\\"'))
    (work / "results" / "cpu" / "baseline" / "seed0" / "metrics.json").write_text('{"val_loss_full": 1.5}')
    edited = copies[0].read_text()
    wc.main(work)
    assert copies[0].read_text() == edited
    assert "1.5" in (work / "results" / "cpu" / "baseline" / "seed0" / "metrics.json").read_text()
    assert not list(work.glob("*.py")), "working copies get no .py twin"


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_work_folder_is_git_ignored():
    out = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "work/01_baseline.ipynb"])
    assert out.returncode == 0, "work/ must be git-ignored"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebook_has_language_info(path):
    """Without it JupyterLab fills it in on opening and marks the notebook unsaved."""
    info = nbformat.read(path, as_version=4).metadata.get("language_info", {})
    assert info.get("name") == "python" and info.get("pygments_lexer") == "ipython3"
