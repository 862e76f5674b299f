#!/usr/bin/env python
"""Check a built Jupyter Book site in headless Chromium: every page loads, logs no console error,
shows all its images, and fetches nothing from outside the site.

    python scripts/check_site.py book/_build/html          # table of pages; exit 1 on any problem

The site is served from a local http.server on 127.0.0.1 (a free port), started and stopped here.
Pages checked: those the book's _toc.yml lists (found beside the _build folder, or given with --toc),
else every top-level .html page except Sphinx's genindex/search. For each page:

- it loads (HTTP 200, document complete);
- the browser console has no SEVERE entry (a JavaScript error, a resource that failed to load);
- every <img> has loaded (naturalWidth > 0), after lazy images are made eager;
- a notebook page (its source in _sources/ is an .ipynb) has at least one image;
- no resource came from another host (the site must read the same offline; --allow-external to skip).

Needs selenium (pip) and Debian's chromium + chromium-driver (apt).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1280,1024"]
SKIP_PAGES = {"genindex", "search", "py-modindex"}


@dataclass
class PageResult:
    page: str
    loaded: bool = False
    images: int = 0
    images_ok: int = 0
    needs_figure: bool = False
    console_errors: list = field(default_factory=list)
    broken_images: list = field(default_factory=list)
    external: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems


def browser_available():
    """None if the checker can run here, else the reason it cannot."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} not found (apt-get install {pkg})"
    return None


def toc_pages(toc_path):
    """Page names (no suffix) in a Jupyter Book _toc.yml: root first, then chapters and sections."""
    import yaml

    toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8")) or {}
    names = [toc["root"]] if toc.get("root") else []

    def walk(entries):
        for entry in entries or ():
            if not isinstance(entry, dict):
                continue
            if entry.get("file"):
                names.append(str(entry["file"]))
            walk(entry.get("sections"))
            walk(entry.get("chapters"))
            for part in entry.get("parts") or ():
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or ():
        walk(part.get("chapters"))
    walk(toc.get("sections"))
    return [n[: -len(Path(n).suffix)] if Path(n).suffix in (".md", ".ipynb", ".rst") else n for n in names]


def pages_to_check(html_dir, toc=None):
    """(pages, where the list came from): the toc's pages that were built, or all top-level pages."""
    html_dir = Path(html_dir)
    toc = Path(toc) if toc else html_dir.resolve().parents[1] / "_toc.yml"
    if toc.exists():
        names = toc_pages(toc)
        return names, f"the pages {toc} lists"
    pages = sorted(p.stem for p in html_dir.glob("*.html") if p.stem not in SKIP_PAGES)
    return pages, f"every page in {html_dir}"


def is_notebook_page(html_dir, page):
    return (Path(html_dir) / "_sources" / f"{page}.ipynb").exists()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


JS = {
    "eager": "document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager');"
             "window.scrollTo(0, document.body.scrollHeight); return true;",
    "settled": "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete);",
    "images": "return Array.from(document.images).map(i => [i.currentSrc || i.src || i.getAttribute('src'),"
              " i.naturalWidth]);",
    "resources": "return performance.getEntriesByType('resource').map(e => e.name);",
}


def serve(html_dir):
    """A ThreadingHTTPServer on 127.0.0.1:<free port> serving html_dir; call .shutdown() when done."""
    handler = functools.partial(_Quiet, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_browser(page_load_timeout=60):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="check-site-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in CHROME_ARGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(page_load_timeout)
    return driver, profile


def check_page(driver, base_url, html_dir, page, needs_figure, timeout=30, allow_external=False):
    res = PageResult(page, needs_figure=needs_figure)
    if not (Path(html_dir) / f"{page}.html").exists():
        res.problems.append("not built (no such .html file)")
        return res
    driver.get_log("browser")  # drop what earlier pages left
    try:
        driver.get(f"{base_url}/{page}.html")
    except Exception as e:  # a timeout, a crash of the renderer
        res.problems.append(f"did not load: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return res
    res.loaded = True
    driver.execute_script(JS["eager"])
    deadline = time.monotonic() + timeout
    while not driver.execute_script(JS["settled"]):
        if time.monotonic() > deadline:
            res.problems.append(f"images still loading after {timeout} s")
            break
        time.sleep(0.1)
    time.sleep(0.2)  # let late console messages (async scripts) arrive
    images = driver.execute_script(JS["images"])
    res.images = len(images)
    res.broken_images = [src for src, width in images if not width]
    res.images_ok = res.images - len(res.broken_images)
    res.console_errors = [e.get("message", "") for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    host = urlparse(base_url).netloc
    res.external = sorted({u for u in driver.execute_script(JS["resources"])
                           if urlparse(u).scheme in ("http", "https") and urlparse(u).netloc != host})
    if res.broken_images:
        res.problems.append(f"{len(res.broken_images)} image(s) did not load: {', '.join(res.broken_images[:3])}")
    if needs_figure and not res.images:
        res.problems.append("a notebook chapter without any figure")
    if res.console_errors:
        res.problems.append(f"{len(res.console_errors)} console error(s): {res.console_errors[0][:200]}")
    if res.external and not allow_external:
        res.problems.append(f"fetches from outside the site: {', '.join(res.external[:3])}")
    raw = unrendered_math((Path(html_dir) / f"{page}.html").read_text(encoding="utf-8"))
    if raw:
        res.problems.append(f"{len(raw)} formula(s) not rendered as math (stray $ or TeX shown): {raw[0][:80]}")
    return res


STRAY_DOLLAR = re.compile(r'\$\s*<span class="math">|</math></span>\s*\$')


def unrendered_math(page_html):
    """Formulas a reader sees as TeX: a `$$ … $$` that MyST split into `$` + inline math + `$` (display
    math that does not stand in its own paragraph), or math the MathML converter gave up on."""
    found = [m.group(0) for m in STRAY_DOLLAR.finditer(page_html)]
    return found + re.findall(r'<code class="math-tex">[^<]*', page_html)


def check_site(html_dir, toc=None, pages=None, timeout=30, allow_external=False):
    """Check the pages of a built site; returns one PageResult per page."""
    html_dir = Path(html_dir).resolve()
    if not (html_dir / "index.html").exists() and not list(html_dir.glob("*.html")):
        raise FileNotFoundError(f"no HTML pages in {html_dir}: build the book first (tinygpt book build)")
    if pages is None:
        pages, _ = pages_to_check(html_dir, toc)
    server = serve(html_dir)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    driver = profile = None
    try:
        driver, profile = start_browser()
        return [check_page(driver, base_url, html_dir, page, is_notebook_page(html_dir, page), timeout=timeout,
                           allow_external=allow_external) for page in pages]
    finally:
        if driver is not None:
            driver.quit()
        if profile:
            shutil.rmtree(profile, ignore_errors=True)
        server.shutdown()
        server.server_close()


def format_table(results):
    rows = [("page", "status", "images", "console errors", "problems")]
    for r in results:
        images = f"{r.images_ok}/{r.images}" + (" (needs ≥1)" if r.needs_figure else "")
        rows.append((r.page, "ok" if r.ok else "FAIL", images, str(len(r.console_errors)), "; ".join(r.problems)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join([c.ljust(w) for c, w in zip(row[:4], widths)] + [row[4]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  --------")
    bad = sum(not r.ok for r in results)
    lines.append(f"{len(results) - bad} of {len(results)} pages passed")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Pages, and what is checked on each, are described at the top of this file.")
    p.add_argument("html_dir", help="the built site, e.g. book/_build/html")
    p.add_argument("--toc", help="the book's _toc.yml (default: <html_dir>/../../_toc.yml if it exists, else "
                                 "every page)")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for a page's images (default 30)")
    p.add_argument("--allow-external", action="store_true",
                   help="do not count resources fetched from other hosts as problems")
    args = p.parse_args(argv)
    reason = browser_available()
    if reason:
        print(f"check_site: cannot run: {reason}", file=sys.stderr)
        return 2
    pages, source = pages_to_check(args.html_dir, args.toc)
    print(f"checking {len(pages)} pages ({source}) in headless Chromium")
    try:
        results = check_site(args.html_dir, pages=pages, timeout=args.timeout, allow_external=args.allow_external)
    except FileNotFoundError as e:
        print(f"check_site: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
