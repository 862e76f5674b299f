"""The book's two scales: the gpu runs kept as measured, the one comparison rule, the hypotheses' rules on
known inputs, and a book folder that holds both scales (site rules, provenance box, device import)."""

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tinygpt.book import hypotheses, regime, results, scales, site

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "results" / "gpu"
needs_gpu_results = pytest.mark.skipif(not (GPU / "provenance" / "SHA256SUMS").exists(), reason="no gpu results")


# ----------------------------------------------------------------------------- the gpu runs, as measured

@needs_gpu_results
def test_the_gpu_runs_are_the_files_the_device_returned():
    """results/gpu/*/seed*/*.json must match the checksums recorded when they were imported: never edited."""
    sums = (GPU / "provenance" / "SHA256SUMS").read_text().split("\n")
    listed = {}
    for line in filter(None, sums):
        digest, name = line.split(maxsplit=1)
        listed[name.removeprefix("./")] = digest
    present = {str(p.relative_to(GPU)) for p in GPU.glob("*/seed*/*.json")}
    assert present == set(listed), "a gpu run file was added or removed without its checksum"
    for name, digest in listed.items():
        assert hashlib.sha256((GPU / name).read_bytes()).hexdigest() == digest, f"{name} was edited"


@needs_gpu_results
def test_the_gpu_comparison_follows_its_runs():
    runs, table, final = scales.scale_comparison("gpu", ROOT / "results")
    t = table.set_index("tag")
    for tag in set(runs.tag) - {"baseline"}:
        a, b = runs[runs.tag == tag].val_loss_full, runs[runs.tag == "baseline"].val_loss_full
        assert t.loc[tag, "diff"] == pytest.approx(a.mean() - b.mean())
        # every run over-fits at this scale: the final checkpoint is above the best one
        rise = (runs.final_val_loss_full - runs.val_loss_full)[runs.tag == tag].mean()
        assert t.loc[tag, "final_rise"] == pytest.approx(rise) and rise > regime.OVERFIT_NATS
    assert regime.metric_for(runs) == "val_loss_full"  # so a comparison across lengths takes the best checkpoint
    gap = regime.gap_over_training(results.load_histories(runs.path))
    for r in scales.head_start(gap).itertuples():
        g = gap[gap.tag == r.tag].sort_values("iter")
        after = g[g["iter"] >= r.closed_at]["diff"]
        before = g[g["iter"] < r.closed_at]["diff"]
        assert (after >= -scales.CLOSE_NATS).all() and before.iloc[-1] < -scales.CLOSE_NATS


# ----------------------------------------------------------------------------- the one rule

def test_holm_turns_a_lone_significant_interval_into_inconclusive():
    rows = pd.DataFrame({"lo": [-0.09, -0.05, -0.02], "hi": [-0.05, -0.001, 0.02], "p": [0.001, 0.03, 0.9]})
    out = results.judge(rows)
    assert out.verdict.tolist() == ["better", "inconclusive", "matches"]  # 0.03 × 2 = 0.06 after Holm
    assert out["p (Holm)"].tolist() == pytest.approx([0.003, 0.06, 0.9])
    assert results.verdict(0.01, 0.03, p_holm=0.001) == "worse" and results.verdict(-0.1, 0.1) == "inconclusive"


def test_the_checkpoint_rule_takes_the_final_one_only_where_nothing_over_fits():
    calm = pd.DataFrame({"val_loss_full": [1.90, 1.91], "final_val_loss_full": [1.899, 1.915]})
    assert regime.metric_for(calm) == "final_val_loss_full"
    assert regime.metric_for(calm.assign(final_val_loss_full=[1.90, 2.1])) == "val_loss_full"
    assert regime.metric_for(calm.assign(final_val_loss_full=[1.90, np.nan])) == "val_loss_full"


# ----------------------------------------------------------------------------- the hypotheses' rules

def _budgets(slope, variant="w", half=0.01, p1=1e-4):
    b = np.array([1, 2, 4, 8])
    d = -0.2 + slope * np.log2(b)
    return pd.DataFrame({"variant": variant, "budget": b, "tokens": b * 1_000_000, "diff": d, "lo": d - half,
                         "hi": d + half, "n": 3, "verdict": ["better"] * 4, "p": p1})


def test_h3_supported_when_the_gap_closes_refuted_when_it_does_not():
    fits, verdict = hypotheses.h3_fits(_budgets(0.04), 64_000_000)
    assert verdict == "supported" and fits["w"]["slope"] == pytest.approx(0.04)
    fits, verdict = hypotheses.h3_fits(_budgets(-0.03), 64_000_000)
    assert verdict == "refuted"
    flat = _budgets(0.0, half=0.2).assign(verdict="inconclusive")
    assert hypotheses.h3_fits(flat, 64_000_000)[1] == "inconclusive"


def test_h1_is_contradicted_where_a_variant_that_injects_the_information_is_better():
    r2 = pd.Series({"resid+position": 0.8, "token+position": 0.5, "random init": 0.4, "position": 0.1})
    means = {"structure": r2, "spans": r2}
    h1 = hypotheses.h1_verdict(means, {"1×": {"soft_window": "better", "structure_gate": "worse"},
                                       "8×": {"soft_window": "inconclusive"}})
    assert h1["per_info"]["spans"]["contradicted_in"] == ["1×"] and h1["verdict"] == "contradicted"
    assert h1["by_regime"]["8×"]["spans"] == "supported" and h1["per_info"]["structure"]["verdict"] == "supported"
    weak = {"structure": r2.copy(), "spans": r2.copy()}
    weak["spans"]["token+position"] = 0.85  # the stream no longer beats the token and its position
    assert hypotheses.h1_verdict(weak, {})["per_info"]["spans"]["verdict"] == "inconclusive"


def test_h2_is_decided_by_the_step_to_more_text():
    change = pd.DataFrame({"variant": ["w"], "change": [-0.05], "lo": [-0.08], "hi": [-0.02]})
    assert hypotheses.h2_verdict(change, 2.2) == "supported"
    assert hypotheses.h2_verdict(change.assign(lo=-0.004, hi=0.03), 2.2) == "refuted"
    assert hypotheses.h2_verdict(change.assign(lo=-0.1, hi=0.1), 2.2) == "inconclusive"


# ----------------------------------------------------------------------------- a book folder of two scales

def _page(path, preset, started="2026-12-04T14:38:04+00:00"):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# A chapter\n\nAt {preset}.")]
    nb.metadata["papermill"] = {"parameters": {"preset": preset}, "input_path": "/abs/notebooks/x.ipynb"}
    nb.metadata["tinygpt_run"] = {"preset": preset, "started_at": started, "seconds": 1.0}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    log = {"preset": preset, "notebooks": {path.stem: {"started_at": started, "device": f"a {preset} machine",
                                                         "torch": "9.9", "python": "3.x"}}}
    (path.parent / "_run_log.json").write_text(json.dumps(log))


def test_a_book_of_two_scales_is_accepted_and_smoke_or_a_misfiled_page_is_refused(tmp_path, monkeypatch):
    _page(tmp_path / "01_a.ipynb", "cpu")
    _page(tmp_path / "gpu" / "01_a.ipynb", "gpu")
    monkeypatch.setattr(site, "BOOK_DIR", tmp_path)
    assert site.preset_problem(tmp_path) is None
    assert site.scale_folders(tmp_path) == {"": {"01_a": "cpu"}, "gpu": {"01_a": "gpu"}}
    _page(tmp_path / "gpu" / "02_b.ipynb", "cpu")
    assert "different presets" in site.preset_problem(tmp_path)
    (tmp_path / "gpu" / "02_b.ipynb").unlink()
    _page(tmp_path / "smoke" / "01_a.ipynb", "smoke")
    assert "smoke preset" in site.preset_problem(tmp_path)
    shutil.rmtree(tmp_path / "smoke")
    _page(tmp_path / "gpu" / "01_a.ipynb", "cpu")
    assert "named after (gpu)" in site.preset_problem(tmp_path)


def test_each_page_says_its_scale_and_finds_its_counterpart(tmp_path):
    _page(tmp_path / "01_a.ipynb", "cpu", "2026-11-30T01:48:19+00:00")
    _page(tmp_path / "gpu" / "01_a.ipynb", "gpu")
    _page(tmp_path / "02_b.ipynb", "cpu")
    assert scales.counterpart(tmp_path / "01_a.ipynb") == tmp_path / "gpu" / "01_a.ipynb"
    assert scales.counterpart(tmp_path / "gpu" / "01_a.ipynb") == tmp_path / "01_a.ipynb"
    assert scales.counterpart(tmp_path / "02_b.ipynb") is None
    text = scales.provenance_text(scales.page_provenance(tmp_path / "gpu" / "01_a.ipynb"))
    assert text.startswith("Computed at the gpu preset, the original's scale (6 layers × 6 heads, width 384")
    assert "Executed 2026-12-04 14:38 UTC on a gpu machine, torch 9.9" in text


@pytest.mark.slow
def test_the_built_site_shows_the_box_and_links_the_scales(tmp_path):
    """A built two-scale book: every executed page carries its scale box, with a working link to the other scale."""
    pytest.importorskip("jupyter_book")
    book = tmp_path / "book"
    book.mkdir()
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / "book" / name, book / name)
    (book / "intro.md").write_text("# Intro\n\n:::{admonition} Provenance\n:class: note\n{{ provenance }}\n:::\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nparts:\n  - caption: cpu\n    chapters:\n"
                                   "      - file: 01_a\n  - caption: gpu\n    chapters:\n      - file: gpu/01_a\n"
                                   "      - file: gpu/02_missing\n")
    _page(book / "01_a.ipynb", "cpu")
    _page(book / "gpu" / "01_a.ipynb", "gpu")
    assert site.build(book, quiet=True) == 0  # the missing gpu/02 is left out, not an error
    html = book / "_build" / "html"
    cpu, gpu = (html / "01_a.html").read_text(), (html / "gpu" / "01_a.html").read_text()
    assert "scale-provenance" in cpu and "scale-provenance" in gpu
    assert 'href="gpu/01_a.html"' in cpu and 'href="../01_a.html"' in gpu
    intro = (html / "intro.html").read_text()
    assert "pages at the gpu preset" in intro and "{{" not in intro


# ----------------------------------------------------------------------------- bringing a device call's files in

def test_device_files_come_in_unaltered_and_never_replace_committed_runs(tmp_path, script, capsys):
    out = tmp_path / "device"
    run = out / "results" / "gpu" / "soft_window" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"best_val_loss": 1.46}\n')
    (out / "results" / "smoke" / "baseline" / "seed0").mkdir(parents=True)
    (out / "results" / "smoke" / "baseline" / "seed0" / "metrics.json").write_text("{}")
    _page(out / "book" / "02_query_windows.ipynb", "gpu")
    with tarfile.open(tmp_path / "results.tar.gz", "w:gz") as tar:
        tar.add(out / "results", arcname="results")
    with tarfile.open(tmp_path / "book.tar.gz", "w:gz") as tar:
        tar.add(out / "book", arcname="book")
    repo = tmp_path / "repo"
    imp = script("import_device_book")
    assert imp.main([str(tmp_path / "book.tar.gz"), str(tmp_path / "results.tar.gz"), "--repo", str(repo)]) == 0
    got = repo / "results" / "gpu" / "soft_window" / "seed0" / "metrics.json"
    assert got.read_bytes() == (run / "metrics.json").read_bytes() and not (repo / "results" / "smoke").exists()
    page = json.loads((repo / "book" / "gpu" / "02_query_windows.ipynb").read_text())
    assert page["metadata"]["papermill"]["input_path"] == "notebooks/02_query_windows.ipynb"
    assert (repo / "book" / "gpu" / "_run_log.json").exists()
    got.write_text('{"val_loss_full": 9.99}\n')  # a committed run that differs: kept, both values listed
    assert imp.main([str(tmp_path / "results.tar.gz"), "--repo", str(repo)]) == 0
    assert "9.99" in got.read_text()
    assert "kept as committed" in capsys.readouterr().out
    assert imp.main([str(tmp_path / "results.tar.gz"), "--repo", str(repo), "--overwrite"]) == 0
    assert got.read_bytes() == (run / "metrics.json").read_bytes()
