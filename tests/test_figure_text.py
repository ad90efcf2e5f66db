"""No text over text in any figure the demos and the lessons write (bounding boxes compared).

Figure.savefig is wrapped so that every figure written while a demo or a lesson's figure
script runs is checked just before it is saved: the check sees what the PNG shows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from figure_text import overlapping_texts
from matplotlib.figure import Figure

from tinyres.cli import main

LESSONS = Path(__file__).resolve().parents[1] / "lessons"


@pytest.fixture
def written(monkeypatch):
    """The overlaps of every figure saved while the test runs, as (file, pairs)."""
    seen: list[tuple[str, list]] = []
    save = Figure.savefig

    def checked(fig, fname, *args, **kwargs):
        seen.append((str(fname), overlapping_texts(fig)))
        return save(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    return seen


def test_the_check_finds_text_drawn_over_text():
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.set_xlabel("the x-axis label")
    fig.text(0.5, 0.01, "a caption under the plot", ha="center", va="bottom")
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # room kept for the caption
    assert overlapping_texts(fig) == []
    fig.subplots_adjust(bottom=0.05)  # the axes pushed down onto the caption
    assert any("a caption under the plot" in pair for pair in overlapping_texts(fig))


# The default `demo vanishing` is the README's figure, whose three-line caption used to run over
# the x-axis labels; --quick's caption is shorter.
@pytest.mark.parametrize("argv", [["vanishing"], ["vanishing", "--quick", "--activation", "sigmoid"],
                                  ["jacobian", "--quick"]], ids=" ".join)
def test_demo_figures_have_no_overlapping_text(argv, tmp_path, written):
    assert main(["demo", *argv, "--out", str(tmp_path)]) == 0
    assert written and all(not pairs for _, pairs in written), written


# The lessons' figures that need no trained nets (10 to 12 are drawn from long runs).
CHEAP = ["01-graph", "03-finite-differences", "05-im2col", "07-basic-block", "08-bottleneck-block",
         "09-resnet18"]


@pytest.mark.parametrize("name", CHEAP)
def test_lesson_figures_have_no_overlapping_text(name, tmp_path, written):
    spec = importlib.util.spec_from_file_location("make_figures", LESSONS / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    make_figures.FIGURES[name]().savefig(tmp_path / f"{name}.png")
    assert written and all(not pairs for _, pairs in written), written


@pytest.mark.parametrize("name", ["graph", "bottleneck"])
def test_readme_figures_have_no_overlapping_text(name, tmp_path, written):
    spec = importlib.util.spec_from_file_location("docs_figures", LESSONS.parent / "docs" / "make_figures.py")
    docs_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_figures)
    docs_figures.FIGURES[name][1](tmp_path / f"{name}.png")
    assert written and all(not pairs for _, pairs in written), written


def test_playground_pictures_have_no_overlapping_text():
    from tinyres.demos.playground import Choice, picture

    fig, _ = picture(Choice(depth=8, batch=4, residual=False))
    assert overlapping_texts(fig) == []
