"""A small Sphinx extension that book/_config.yml loads: math as MathML, a favicon, and a box under each
executed page's title that says at which scale, where and when it was computed.

Math is converted to MathML at build time (latex2mathml), which browsers render natively, so the
site needs no MathJax from a CDN and reads the same offline.
"""

import html
import re

_NUMBERED_ENV = re.compile(r"\\(begin|end)\{(align|gather|multline|flalign|equation)\}")


def _mathml(latex, display, node, translator):
    from latex2mathml.converter import convert

    # Sphinx numbers a block as a whole (the eqno span); latex2mathml would number each row again
    latex = _NUMBERED_ENV.sub(lambda m: f"\\{m[1]}{{{m[2]}*}}", latex)
    try:
        return convert(latex.strip(), display=display)
    except Exception as e:
        from sphinx.util import logging

        logging.getLogger(__name__).warning(f"math not converted to MathML ({type(e).__name__}: {e}); shown as "
                                            f"TeX: {latex.strip()[:60]!r}", location=node)
        return f'<code class="math-tex">{html.escape(latex)}</code>'


def _visit_math(self, node):
    from docutils import nodes

    self.body.append(self.starttag(node, "span", "", CLASS="math"))
    self.body.append(_mathml(node.astext(), "inline", node, self) + "</span>")
    raise nodes.SkipNode


def _visit_displaymath(self, node):
    from docutils import nodes
    from sphinx.util.math import get_node_equation_number

    self.body.append(self.starttag(node, "div", CLASS="math"))
    if node.get("number"):
        self.body.append(f'<span class="eqno">({get_node_equation_number(self, node)})')
        self.add_permalink_ref(node, "Link to this equation")
        self.body.append("</span>")
    latex = node.astext()
    parts = [latex] if node.get("nowrap") else [p for p in latex.split("\n\n") if p.strip()]
    # the theme lays div.math out as a row (equation number last) that only MathJax's element fills
    self.body.append('<div class="mathml" style="flex-grow: 1; overflow-x: auto; overflow-y: hidden">')
    for part in parts:
        self.body.append(_mathml(part, "block", node, self))
    self.body.append("</div></div>\n")
    raise nodes.SkipNode


def setup(app):
    """Sphinx entry point: math as MathML when latex2mathml is installed (else MathJax, online); a favicon."""
    app.connect("html-page-context", _favicon)
    app.connect("doctree-read", _provenance_box)
    app.connect("config-inited", _provenance_substitution)
    try:
        import latex2mathml.converter  # noqa: F401
    except ImportError:
        from sphinx.util import logging

        logging.getLogger(__name__).warning("latex2mathml is not installed: math falls back to MathJax from a "
                                            "CDN, which needs the network to display")
        return {"parallel_read_safe": True, "parallel_write_safe": True}
    app.add_html_math_renderer("mathml", (_visit_math, None), (_visit_displaymath, None))

    def choose(app, config):
        if not config.html_math_renderer:
            config.html_math_renderer = "mathml"

    app.connect("config-inited", choose)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# an "α" on a dark square: inline, so that browsers do not request a /favicon.ico the site lacks
FAVICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' "
           "height='16' rx='3' fill='%23333'/%3E%3Ctext x='8' y='12.5' font-size='12' text-anchor='middle' "
           "fill='white' font-family='serif'%3E%CE%B1%3C/text%3E%3C/svg%3E")


def _favicon(app, pagename, templatename, context, doctree):
    if not app.config.html_favicon:
        context["metatags"] = context.get("metatags", "") + f'\n    <link rel="icon" href="{FAVICON}" />'


def _provenance_box(app, doctree):
    """A note under each executed page's title: the scale it was computed at, where and when, and a link to the
    same chapter at the other scale. Read from the page's metadata at build time, so pages executed
    elsewhere (book/gpu/, on a lent GPU) say it in the same words."""
    from pathlib import Path

    from docutils import nodes
    from sphinx import addnodes

    from .scales import counterpart, page_provenance, provenance_text

    source = Path(app.env.doc2path(app.env.docname))
    info = page_provenance(source) if source.suffix == ".ipynb" else None
    section = next(iter(doctree.findall(nodes.section)), None)
    if info is None or section is None:
        return
    box = nodes.admonition(classes=["note", "scale-provenance"])
    box += nodes.title(text="Scale and provenance of this page")
    para = nodes.paragraph()
    for i, piece in enumerate(provenance_text(info).split("`")):  # `code` as code
        para += nodes.literal(text=piece) if i % 2 else nodes.Text(piece)
    box += para
    other = counterpart(source)
    if other is not None:
        other_info = page_provenance(other)
        root = Path(app.srcdir)
        target = "/" + other.relative_to(root).with_suffix("").as_posix()
        para = nodes.paragraph(text=f"The same chapter at the {other_info['preset'] if other_info else 'other'} "
                                    "preset: ")
        ref = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget=target, refexplicit=False,
                                    refdoc=app.env.docname)
        ref += nodes.inline(text=target)
        para += ref
        para += nodes.Text(".")
        box += para
    section.insert(1, box)


def _provenance_substitution(app, config):
    """{{ provenance }} in the book's pages: the site's provenance, from the run logs and the runs' metrics files
    as they are at build time (scales.provenance_markdown), so the box never goes stale."""
    from .scales import provenance_markdown

    subs = dict(getattr(config, "myst_substitutions", None) or {})
    subs["provenance"] = provenance_markdown(app.srcdir)
    config.myst_substitutions = subs
