"""The course's web site in a real browser (headless Chromium, from the system's packages).

CI builds the site (`tinyres lessons --site DIR`) and runs this file with TINYRES_SITE=DIR:
every page loads with no console error, every image loads, every formula is rendered,
every internal link and anchor exists, and every lesson page shows outputs. The first test
shows the checker catches each of those on a small broken site, so a pass means something.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("tornado")
from browser import check_site

needs_chromium = pytest.mark.skipif(
    not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
    reason="Chromium is not installed (apt-get install -y chromium)")

GOOD = """<html><head><title>ok</title></head><body><h1 id="top">ok</h1>
<a href="lessons/01-ok.html#here">a lesson</a><img src="dot.png" alt="a dot"></body></html>"""
LESSON = """<html><body><h1 id="here">lesson</h1><div class="cell_output">42</div></body></html>"""
BROKEN = """<html><body><h1>broken</h1>
<img src="missing.png" alt="no such file">
<span class="math notranslate nohighlight">\\(x^2\\)</span>
<a href="nowhere.html">a dead link</a> <a href="index.html#nope">a dead anchor</a>
<script>console.error("something failed")</script></body></html>"""


@needs_chromium
def test_the_checker_reports_each_kind_of_breakage(tmp_path: Path):
    import matplotlib.pyplot as plt

    plt.imsave(tmp_path / "dot.png", [[0.0, 1.0]])
    (tmp_path / "index.html").write_text(GOOD)
    (tmp_path / "broken.html").write_text(BROKEN)
    (tmp_path / "lessons").mkdir()
    (tmp_path / "lessons" / "01-ok.html").write_text(LESSON)
    (tmp_path / "lessons" / "02-empty.html").write_text("<html><body><p>no outputs</p></body></html>")
    problems = check_site(tmp_path)
    assert set(problems) == {"broken.html", "lessons/02-empty.html"}, problems
    found = "\n".join(problems["broken.html"])
    for kind in ("console: something failed", "image did not load", "unrendered math: '\\\\(x^2\\\\)'",
                 "broken link: ", "nowhere.html", "broken anchor: ", "index.html#nope"):
        assert kind in found, (kind, found)
    assert problems["lessons/02-empty.html"] == ["a lesson page without outputs"]


@needs_chromium
@pytest.mark.skipif("TINYRES_SITE" not in os.environ,
                    reason="set TINYRES_SITE to a built site (CI builds one)")
def test_every_page_of_the_built_site_loads_whole():
    root = Path(os.environ["TINYRES_SITE"])
    pages = list(root.rglob("*.html"))
    lessons = list(root.glob("lessons/[0-9][0-9]-*.html"))
    assert len(lessons) >= 13 and len(pages) > len(lessons), "not a built site"
    problems = check_site(root)
    assert not problems, "\n".join(f"{page}: {p}" for page, found in problems.items() for p in found)


@pytest.mark.skipif("TINYRES_SITE" not in os.environ,
                    reason="set TINYRES_SITE to a built site (CI builds one)")
def test_the_playground_pictures_cover_every_choice_the_page_offers():
    import itertools
    import math
    import re

    from tinyres.demos.playground import GRID, Choice

    root = Path(os.environ["TINYRES_SITE"])
    page = next(root.glob("lessons/10-*.html")).read_text()
    assert page.count('<select data-part="') == len(GRID)
    for values in itertools.product(*GRID.values()):
        stem = Choice(**dict(zip(GRID, values))).stem()
        assert (root / "_static" / "playground" / f"{stem}.png").is_file(), stem
    assert len(list((root / "_static" / "playground").glob("*.png"))) == math.prod(map(len, GRID.values()))
    assert re.search(r'<option value="false">off</option>', page)
