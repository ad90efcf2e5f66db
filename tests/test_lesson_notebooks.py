"""The lessons as notebooks: every lesson converts, doctest blocks become runnable code, and
the blocks the lessons' tests skip become cells skipped under the same condition.

Executing the notebooks through a kernel takes minutes, so CI does it with
``tinyres lessons --execute``; these tests check the conversion, in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

from tinyres.cli.lessons import dependency_problems, doctest_to_code, lesson_files, to_notebook  # noqa: E402

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
    for cell in code[1:]:  # after the %matplotlib magic, every cell is valid Python
        compile(cell.source, f"{path.name} cell", "exec")
    skips = path.read_text().count("<!-- skip: next")
    assert sum("skip_if" in c.metadata for c in code) == skips
    assert not any("<!-- skip" in c.source for c in notebook.cells)
    assert not any("```pycon" in c.source for c in notebook.cells)  # every transcript became code
    assert code[0].source == "%matplotlib inline"  # figures a cell returns are shown
    # JupyterLab opens a lesson's .md with plain jupytext: the transcripts must stay text there
    plain = jupytext.read(path, fmt="md")
    assert not any(c.cell_type == "code" and c.source.lstrip().startswith(">>>") for c in plain.cells)


@pytest.mark.parametrize("path", lesson_files(LESSONS, []), ids=lambda p: p.stem)
def test_no_block_runs_on_what_a_skipped_block_would_have_made(path):
    assert dependency_problems(path) == []


def test_a_block_using_a_skipped_blocks_name_is_found(tmp_path):
    lesson = tmp_path / "99-x.md"
    lesson.write_text(
        "```python\ntry:\n    import torch\nexcept ImportError:\n    torch = None\n```\n\n"
        '<!-- skip: next if(torch is None, reason="PyTorch is not installed") -->\n\n'
        "```python\ncases = [torch.ones(2)]\n```\n\n"
        "```python\ndef total(xs):\n    return sum(len(x) for x in xs) + len(cases)\n```\n\n"
        "```pycon\n>>> cases = []\n>>> len(cases)\n0\n```\n\n"
        "```python\nassert cases == []  # made again by the transcript: fine\n```\n")
    problems = dependency_problems(lesson)
    assert len(problems) == 1 and "99-x.md:14" in problems[0] and "cases" in problems[0]
    assert "torch is None" in problems[0]


def test_skipped_cells_keep_their_code_and_transcripts_become_cells(tmp_path):
    lesson = tmp_path / "99-x.md"
    lesson.write_text(
        "# X\n\n```python\nx = 2\n```\n\nText.\n\n```pycon\n>>> x + 1\n3\n```\n\nMore text.\n\n"
        '<!-- skip: next if(x == 2, reason="x is two") -->\n\n```python\nprint(x)\n```\n')
    notebook = to_notebook(lesson)
    kinds = [(c.cell_type, c.source) for c in notebook.cells]
    assert kinds[1:] == [("markdown", "# X"), ("code", "x = 2"), ("markdown", "Text."), ("code", "x + 1"),
                         ("markdown", "More text."), ("code", "# Skipped if x is two.\nprint(x)")]
    assert notebook.cells[-1].metadata["skip_if"] == "x == 2"


def test_lessons_by_number_or_name_and_a_clear_error_for_an_unknown_one():
    assert [p.stem for p in lesson_files(LESSONS, ["2", "03-checking-gradients"])] == [
        "02-broadcasting", "03-checking-gradients"]
    with pytest.raises(ValueError, match="no lesson 99"):
        lesson_files(LESSONS, ["99"])


def test_site_with_missing_notebooks_is_one_clear_line(tmp_path, capsys):
    from tinyres.cli import main

    code = main(["lessons", "--site", str(tmp_path / "site"), "--notebooks", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    # with the docs extra: the notebooks are named; without it: the extra is
    assert "no notebook of 01-tensors-and-autograd" in err or '.[docs]' in err
    assert not (tmp_path / "site").exists()
