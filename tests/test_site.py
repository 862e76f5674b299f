"""The rendered book in a real browser: scripts/check_site.py on a small built site, on broken pages,
and on the committed, executed book (built into a temporary copy).

Needs selenium (pip) and Debian's chromium + chromium-driver (apt); skipped with the reason otherwise.
"""

import base64
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinygpt import book

REPO = Path(__file__).resolve().parents[1]
CHECKER = REPO / "scripts" / "check_site.py"

spec = importlib.util.spec_from_file_location("check_site", CHECKER)
check_site = sys.modules["check_site"] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
spec.loader.exec_module(check_site)

needs_browser = pytest.mark.skipif(check_site.browser_available() is not None,
                                   reason=f"no headless browser: {check_site.browser_available()}")

# a 1×1 PNG
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
                         "AAAABJRU5ErkJggg==")


def executed_chapter(path):
    """A small notebook, executed by nbclient, whose output holds a matplotlib figure."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter\n\nThe span $\\sigma$ of a head, in tokens:\n\n"
                                      "$$ \\sigma = 1 + \\frac{L}{2} e^{a} $$"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                                  "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1, 2], [2.0, 1.6, 1.5])\n"
                                  "ax.set(title='validation loss', xlabel='step', ylabel='loss (nats)')\nplt.show()"),
        nbformat.v4.new_code_cell("print('done')"),
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert any(o.get("data", {}).get("image/png") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    nbformat.write(nb, path)


@needs_browser
def test_a_built_standin_book_passes(tmp_path):
    """The book's own _config.yml, a toc of an intro page and one executed chapter: builds offline and passes."""
    pytest.importorskip("jupyter_book")
    assert importlib.util.find_spec("latex2mathml"), (
        "latex2mathml is missing: without it the book's math needs MathJax from a CDN (pip install latex2mathml)")
    site = tmp_path / "book"
    site.mkdir()
    for name in ("_config.yml", "references.bib"):
        shutil.copy(REPO / "book" / name, site / name)
    (site / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n")
    (site / "intro.md").write_text("# A stand-in book\n\nInline math: $p_{ij}$.\n")
    executed_chapter(site / "chapter.ipynb")

    assert book.build(site, quiet=True) == 0
    html = site / "_build" / "html"
    results = check_site.check_site(html)
    print(check_site.format_table(results))
    assert [r.page for r in results] == ["intro", "chapter"]
    assert all(r.ok for r in results), check_site.format_table(results)
    chapter = results[1]
    assert chapter.needs_figure and chapter.images_ok >= 1 and not chapter.external
    assert "<math" in (html / "chapter.html").read_text()  # math rendered at build time, no MathJax


@needs_browser
def test_the_checker_fails_on_broken_pages(tmp_path):
    site = tmp_path / "html"
    (site / "_sources").mkdir(parents=True)
    (site / "pixel.png").write_bytes(PIXEL)

    def page(name, body):
        (site / f"{name}.html").write_text(f"<!DOCTYPE html><html><head><title>{name}</title>"
                                           f'<link rel="icon" href="data:,"></head><body>{body}</body></html>')

    page("index", '<p>fine</p><img src="pixel.png" alt="a pixel">')
    page("broken_image", '<img src="pixel.png" alt="fine"><img src="figures/missing.png" alt="missing">')
    page("console_error", "<script>console.error('something broke')</script>")
    page("no_figure", "<p>a notebook chapter whose figures went missing</p>")
    (site / "_sources" / "no_figure.ipynb").write_text("{}")
    page("external", '<link rel="stylesheet" href="http://localhost:9/theme.css">')

    proc = subprocess.run([sys.executable, str(CHECKER), str(site), "--timeout", "10"], capture_output=True,
                          text=True, timeout=300)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 1
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[3:] if line.strip()}
    assert " ok " in rows["index"]
    assert "FAIL" in rows["broken_image"] and "1 image(s) did not load" in rows["broken_image"]
    assert "figures/missing.png" in rows["broken_image"]
    assert "FAIL" in rows["console_error"] and "something broke" in rows["console_error"]
    assert "FAIL" in rows["no_figure"] and "without any figure" in rows["no_figure"]
    assert "FAIL" in rows["external"] and "outside the site: http://localhost:9/theme.css" in rows["external"]
    assert "1 of 5 pages passed" in proc.stdout


CHAPTERS = ["01_baseline", "02_query_windows", "03_structure_gating", "04_structure_embeddings",
            "05_network_shape", "06_why_it_matches", "07_conclusions"]


@needs_browser
@pytest.mark.skipif(not all((REPO / "book" / f"{c}.ipynb").exists() for c in CHAPTERS),
                    reason="the committed book has no executed chapters yet (tinygpt book run)")
def test_the_committed_book_builds_offline_and_passes(tmp_path):
    """Build the committed, executed book (a copy, so book/_build is left alone) and check every page."""
    from tinygpt.book import build
    book = tmp_path / "book"
    shutil.copytree(REPO / "book", book, ignore=shutil.ignore_patterns("_build", ".*"))
    assert build(book, quiet=True) == 0
    results = check_site.check_site(book / "_build" / "html", toc=book / "_toc.yml")
    print(check_site.format_table(results))
    assert len(results) == len(CHAPTERS) + 1
    assert all(r.ok for r in results), check_site.format_table(results)
