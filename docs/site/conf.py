"""Sphinx configuration of the course's web site; ``tinyres lessons --site DIR`` stages the pages and builds.

Sphinx + MyST-NB, because the lessons are notebooks with outputs: MyST-NB renders each
output by its richest type (figures as images, text as text, errors as errors), reads the
same ``$...$`` math as the Markdown, and Sphinx brings what a course needs without
plugins: a table of contents, previous/next links, a search index that works offline,
and an API reference from the docstrings (autodoc). The book theme is the one made for
course-like sites. Nothing is executed here: the notebooks arrive executed.
"""

import re

project = "tinyres"
author = "the tinyres authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_build"]

nb_execution_mode = "off"  # executed by `tinyres lessons --execute`, the one conversion
nb_ipywidgets_js = {}  # the playground's pictures replace its widgets; nothing from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # README's links to its own sections
suppress_warnings = ["myst.header"]  # lessons start at "# Lesson N", sections may skip a level

# MathJax 3 from the site's own _static/ (copied from the django-static-mathjax package): no CDN.
mathjax_path = "mathjax/tex-chtml-full.js"

autodoc_member_order = "bysource"
autodoc_default_options = {"undoc-members": False}

html_theme = "sphinx_book_theme"
html_title = "tinyres"
html_static_path = ["_static"]
html_css_files = ["tinyres.css"]
html_theme_options = {"show_toc_level": 2, "use_download_button": False, "use_fullscreen_button": False}
html_show_sourcelink = False
html_favicon = "_static/favicon.png"  # drawn by the build
# Without a default the theme's script logs "invalid theme mode" as a console error on a first visit.
html_context = {"default_mode": "light"}


LONE_STAR = re.compile(r"(?<=[\s(,\[])\*(?=[\s),\]]|$)")  # "(N, C, *)": a shape, not emphasis


def _plain_text_marks(app, what, name, obj, options, lines) -> None:
    """Docstrings write a norm as ``|x|`` and any trailing dimensions as ``*``, which
    reStructuredText reads as a substitution and the start of emphasis (errors, rendered as
    links to nowhere): escape them, except in doctests and indented blocks."""
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith((">>>", "...")):
            lines[i] = LONE_STAR.sub(r"\\*", line.replace("|", "\\|"))


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_marks)
