"""The rendered book in a real browser: scripts/check_site.py on a small built site, on broken pages,
and on the committed, executed book (built into a temporary copy).

Needs selenium (pip) and Debian's chromium + chromium-driver (apt); skipped with the reason otherwise.
"""

import base64
import importlib.util
import shutil
import subprocess
import sys
import time
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
    html = standin_site(tmp_path, "# A stand-in book\n\nInline math: $p_{ij}$.\n")
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
    page("split_math", '<p>$<span class="math"><math><mi>x</mi></math></span>$</p>')  # a $$ … $$ that MyST split

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
    assert "FAIL" in rows["split_math"] and "not rendered as math" in rows["split_math"]
    assert "1 of 6 pages passed" in proc.stdout


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
    assert len(results) == len(check_site.toc_pages(book / "_toc.yml"))  # intro, both scales' chapters, reference
    assert {"gpu/01_baseline", "gpu/02_query_windows", "variants"} <= {r.page for r in results}
    assert all(r.ok for r in results), check_site.format_table(results)


# ----------------------------------------------------------------------------- what a reader sees: screenshots

SHOT_WIDTHS = (1280, 800)  # a laptop window and a narrow one (the sidebar folds away)
FIGURE_SHRINK = 1.15  # a figure drawn smaller than 1/1.15 (87%) of its pixels has labels below their intended size


def _screenshot(url, path, width, height=1000):
    """Debian's chromium, headless, as a reader's browser would draw the page."""
    subprocess.run([check_site.CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--disable-dev-shm-usage", f"--user-data-dir={path.parent / 'profile'}",
                    f"--window-size={width},{height}", f"--screenshot={path}", url],
                   capture_output=True, timeout=180, check=True)
    return path


def _blank(png):
    """True if nearly every pixel has the background's colour (a page that rendered nothing)."""
    import numpy as np
    from matplotlib.image import imread
    img = (imread(png)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours, counts = np.unique(img, axis=0, return_counts=True)
    return counts.max() / len(img) > 0.985 or len(colours) < 16


LAYOUT_JS = """
const doc = document.documentElement;
const figs = Array.from(document.querySelectorAll('main img, article img, .bd-article img'))
  .filter(i => i.naturalWidth > 0 && i.clientWidth > 0)
  .map(i => [i.getAttribute('src'), i.naturalWidth, i.clientWidth]);
// a table wider than the column it stands in scrolls its last columns out of sight
const wide = Array.from(document.querySelectorAll('article table, .bd-article table'))
  .map(t => [t.closest('.output, .cell_output, .table-wrapper, section, article') || t.parentElement, t])
  .filter(([box, t]) => t.scrollWidth > Math.min(box.clientWidth, document.querySelector('.bd-article, article')
                                                                   .clientWidth) + 2)
  .map(([box, t]) => (t.querySelector('th') || t).textContent.trim().slice(0, 40) + ' (' + t.scrollWidth + ' px)');
// an admonition whose title is the generic one: its intended title ran into the body (`:::{warning} Title`)
const generic = Array.from(document.querySelectorAll('.admonition > .admonition-title'))
  .map(e => e.textContent.trim()).filter(t => ['Warning', 'Note', 'Tip', 'Important'].includes(t));
return {overflow: doc.scrollWidth - doc.clientWidth, figures: figs, wide_tables: wide, generic_titles: generic};
"""


def page_layout(html_dir, pages, tmp_path):
    """Per page and window width: a screenshot (blank or not), page-level horizontal overflow (px), and each
    figure's natural and drawn width."""
    server = check_site.serve(html_dir)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    out = {}
    try:
        driver, profile = check_site.start_browser()
        try:
            for width in SHOT_WIDTHS:
                driver.set_window_size(width, 1000)
                for page in pages:
                    driver.get(f"{base}/{page}.html")
                    driver.execute_script(check_site.JS["eager"])
                    time.sleep(0.3)
                    shot = _screenshot(f"{base}/{page}.html", tmp_path / f"{page}-{width}.png", width)
                    out[page, width] = {"blank": _blank(shot), **driver.execute_script(LAYOUT_JS)}
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)
    finally:
        server.shutdown()
        server.server_close()
    return out


def layout_problems(layout, check_figures=True):
    problems = []
    for (page, width), r in layout.items():
        if r["blank"]:
            problems.append(f"{page} at {width} px: the screenshot is blank")
        if r["overflow"] > 1:
            problems.append(f"{page} at {width} px: the page scrolls sideways by {r['overflow']} px")
        for table in r.get("wide_tables", []):
            problems.append(f"{page} at {width} px: a table is wider than the column: {table}")
        for title in r.get("generic_titles", []):
            problems.append(f"{page}: an admonition shows the generic title {title!r}, not its own")
        if check_figures and width == SHOT_WIDTHS[0]:
            for src, natural, drawn in r["figures"]:
                if natural > FIGURE_SHRINK * drawn:
                    problems.append(f"{page}: figure {src} is {natural} px wide, drawn at {drawn} px: "
                                    f"its labels shrink to {drawn / natural:.0%}")
    return problems


def standin_site(tmp_path, intro):
    """The book's own _config.yml, an intro page and one executed chapter, built; returns the html folder."""
    site = tmp_path / "book"
    site.mkdir()
    for name in ("_config.yml", "references.bib"):
        shutil.copy(REPO / "book" / name, site / name)
    (site / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n")
    (site / "intro.md").write_text(intro)
    executed_chapter(site / "chapter.ipynb")
    assert book.build(site, quiet=True) == 0
    return site / "_build" / "html"


@needs_browser
def test_screenshots_of_a_standin_book(tmp_path):
    """Screenshots of a built stand-in book are not blank, no page scrolls sideways, figures are drawn at size;
    and the checks fail on a page made to break each of them."""
    pytest.importorskip("jupyter_book")
    html = standin_site(tmp_path, "# A stand-in book\n\nSome text, and a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    layout = page_layout(html, ["intro", "chapter"], tmp_path)
    assert layout_problems(layout) == []

    # the same checks on pages that break them: blank, a 3000 px wide block, a 2400 px figure squeezed to 300
    bad = tmp_path / "bad"
    bad.mkdir()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(24, 2), dpi=100)
    fig.savefig(bad / "wide.png")
    (bad / "blank.html").write_text("<!DOCTYPE html><html><body></body></html>")
    (bad / "wide.html").write_text('<!DOCTYPE html><html><body><div style="width:3000px">x</div></body></html>')
    (bad / "shrunk.html").write_text('<!DOCTYPE html><html><body><main><p>text</p>'
                                     '<img src="wide.png" style="width:300px"></main></body></html>')
    cells = "".join(f"<td>column {i} of a table too wide</td>" for i in range(30))
    (bad / "table.html").write_text('<!DOCTYPE html><html><body><article style="width:600px;overflow-x:auto">'
                                    f'<table><tr><th>wide</th>{cells}</tr></table>'
                                    '<div class="admonition warning"><p class="admonition-title">Warning</p>'
                                    '<p>Its own title ran into the body</p></div></article></body></html>')
    problems = layout_problems(page_layout(bad, ["blank", "wide", "shrunk", "table"], tmp_path))
    assert any(p.startswith("blank ") and "screenshot is blank" in p for p in problems)
    assert any(p.startswith("wide") and "sideways" in p for p in problems)
    assert any(p.startswith("shrunk") and "labels shrink" in p for p in problems)
    assert any(p.startswith("table at 800 px: a table is wider than the column") for p in problems)
    assert any(p.startswith("table: an admonition shows the generic title 'Warning'") for p in problems)


@needs_browser
@pytest.mark.skipif(not all((REPO / "book" / f"{c}.ipynb").exists() for c in CHAPTERS),
                    reason="the committed book has no executed chapters yet (tinygpt book run)")
def test_the_committed_book_as_a_reader_sees_it(tmp_path):
    """Every page of the committed book: a non-blank screenshot, no sideways scrolling at 1280 and 800 px, and
    every figure drawn at (nearly) its own size in the column, so its labels read as intended."""
    from tinygpt.book import build
    site = tmp_path / "book"
    shutil.copytree(REPO / "book", site, ignore=shutil.ignore_patterns("_build", ".*"))
    assert build(site, quiet=True) == 0
    pages, _ = check_site.pages_to_check(site / "_build" / "html", site / "_toc.yml")
    problems = layout_problems(page_layout(site / "_build" / "html", pages, tmp_path))
    assert problems == [], "\n".join(problems)
