"""The lessons stand alone: every link stays inside the repository and reaches a file.

A learner with only this repository must be able to follow every link and see every
figure, so a Markdown link or image in ``lessons/*.md`` may not carry a URL scheme
(``https:``, ``mailto:`` ...) and may not resolve outside the repository root or to a
missing file; nor may a lesson point at a path above the repository (``../shared/``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.md"))
# [text](target) and ![alt](target); the target ends at whitespace or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# Code is not a link: `d["a"](x)` in a Python block must not count.
CODE = re.compile(r"```.*?```|`[^`\n]*`", flags=re.DOTALL)


def link_problems(markdown: str, page: Path, root: Path = ROOT) -> list[str]:
    """Each link of ``markdown`` (a page at ``page``) that leaves ``root`` or reaches no file."""
    problems = []
    for target in LINK.findall(CODE.sub("", markdown)):
        if SCHEME.match(target):
            problems.append(f"{target}: links outside the repository")
            continue
        path = target.split("#", 1)[0]
        if not path:  # an anchor on the same page
            continue
        resolved = (page.parent / path).resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: resolves outside the repository, to {resolved}")
        elif not resolved.exists():
            problems.append(f"{target}: no such file {resolved.relative_to(root)}")
    for match in re.finditer(r"\.\./shared/", markdown):
        problems.append(f"{match.group(0)}: a path above the repository")
    return problems


def test_lessons_found():
    assert len(LESSONS) >= 13, [p.name for p in LESSONS]


@pytest.mark.parametrize("page", LESSONS, ids=lambda p: p.name)
def test_lesson_links_stay_inside_and_exist(page: Path):
    assert link_problems(page.read_text(encoding="utf-8"), page) == []


@pytest.mark.parametrize(
    "markdown, expected",
    [
        ("see [the docs](https://example.org/x)", "links outside the repository"),
        ("see [notes](../../notes.md)", "resolves outside the repository"),
        ("see ![fig](figures/not-there.png)", "no such file"),
        ("the files in `../shared/seeds/`", "a path above the repository"),
        ("<img> ![fig](https://example.org/a.png) ```x = d['a'](1)```", "links outside the repository"),
    ],
)
def test_bad_links_are_reported(markdown: str, expected: str):
    problems = link_problems(markdown, ROOT / "lessons" / "page.md")
    assert len(problems) == 1 and expected in problems[0], problems


def test_good_links_pass():
    page = ROOT / "lessons" / "page.md"
    good = "[next](03-checking-gradients.md#a-section) ![f](figures/07-basic-block.png) [top](#top)"
    assert link_problems(good, page) == []
