"""The lessons as notebooks: every lesson converts, doctest blocks become runnable code, and
the blocks the lessons' tests skip become cells skipped under the same condition.

Executing the notebooks through a kernel takes minutes, so CI does it with
``tinyres lessons --execute``; these tests check the conversion, in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

from tinyres.cli.lessons import doctest_to_code, lesson_files, to_notebook  # noqa: E402

LESSONS = Path(__file__).resolve().parents[1] / "lessons"


def test_doctest_examples_become_cells_and_expected_errors_are_caught():
    block = (">>> x = 2\n>>> x + 1\n3\n"
             ">>> 1 / 0\nTraceback (most recent call last):\n...\nZeroDivisionError: division by zero\n")
    cells = doctest_to_code(block)
    assert cells[:2] == ["x = 2", "x + 1"]
    namespace: dict = {}
    for code in cells[:2]:
        exec(code, namespace)
    exec(cells[2], namespace)  # prints the error instead of raising it
    assert "except Exception" in cells[2]


@pytest.mark.parametrize("path", lesson_files(LESSONS, []), ids=lambda p: p.stem)
def test_every_lesson_converts_with_every_code_block(path):
    notebook = to_notebook(path)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, "a lesson without code"
    assert not any(c.source.lstrip().startswith(">>>") for c in code)
    for cell in code:
        compile(cell.source, f"{path.name} cell", "exec")  # every cell is valid Python
    skips = path.read_text().count("<!-- skip: next")
    assert sum("skip_if" in c.metadata for c in code) == skips
    assert not any("<!-- skip" in c.source for c in notebook.cells)


def test_lessons_by_number_or_name_and_a_clear_error_for_an_unknown_one():
    assert [p.stem for p in lesson_files(LESSONS, ["2", "03-checking-gradients"])] == [
        "02-broadcasting", "03-checking-gradients"]
    with pytest.raises(ValueError, match="no lesson 99"):
        lesson_files(LESSONS, ["99"])
