"""The grader grades: every solution passes, every planted mistake fails on the property it
names, every untouched stub is "not started", and the learner never sees a traceback.

The planted mistakes (``lessons/solutions/wrong/``) are what make the grader trustworthy:
each file declares, in ``EXPECTED_FAILURE``, words of the property it must fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tinyres.grading import BY_ID, EXERCISES, grade
from tinyres.grading.core import load

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
WRONG = sorted((LESSONS / "solutions" / "wrong").glob("ex*.py"))


def test_at_least_fourteen_exercises_each_with_stub_solution_and_planted_mistake():
    assert len(EXERCISES) >= 14
    planted = {p.name[:4] for p in WRONG}
    for ex in EXERCISES:
        assert (LESSONS / "exercises" / ex.filename).is_file(), ex.filename
        assert (LESSONS / "solutions" / ex.filename).is_file(), ex.filename
        assert ex.id in planted, f"{ex.id} has no planted mistake"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.id)
def test_solution_passes(exercise):
    report = grade(exercise, LESSONS / "solutions" / exercise.filename)
    assert report.passed, report.text()


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.id)
def test_stub_is_not_started(exercise):
    report = grade(exercise, LESSONS / "exercises" / exercise.filename)
    assert report.state == "not started", report.text()


def _public_signatures(path: Path) -> dict[str, str]:
    """name -> argument list of every top-level function and method, from the source."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        items = node.body if isinstance(node, ast.ClassDef) else [node]
        for item in items:
            if isinstance(item, ast.FunctionDef):
                key = f"{node.name}.{item.name}" if isinstance(node, ast.ClassDef) else item.name
                found[key] = ast.unparse(item.args)
    return found


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.id)
def test_stub_and_solution_have_the_same_signatures(exercise):
    stub = _public_signatures(LESSONS / "exercises" / exercise.filename)
    solution = _public_signatures(LESSONS / "solutions" / exercise.filename)
    assert stub == {k: v for k, v in solution.items() if k in stub}
    assert set(stub) == set(solution)


@pytest.mark.parametrize("path", WRONG, ids=lambda p: p.stem)
def test_planted_mistake_fails_on_the_property_it_names(path):
    report = grade(BY_ID[path.name[:4]], path)
    assert report.state == "failed", report.text()
    expected = load(path).EXPECTED_FAILURE
    failed = [r.name for r in report.results if not r.passed]
    assert any(expected in name for name in failed), (
        f"expected a failure of the property mentioning {expected!r}; failed: {failed}"
    )
    text = report.text()
    assert "Traceback" not in text and "hint:" in text and "smallest failing example" in text


def test_a_crash_in_the_learner_code_is_one_line_naming_their_line(tmp_path):
    ex = BY_ID["ex03"]
    path = tmp_path / ex.filename
    path.write_text("def unbroadcast(grad, shape):\n    return grad.sum(axis=99)\n")
    report = grade(ex, path)
    assert report.state == "failed"
    message = report.results[0].mismatch.what
    assert "AxisError" in message and "line 2 of ex03_unbroadcast.py" in message, message


def test_a_file_that_does_not_import_is_reported(tmp_path):
    path = tmp_path / "ex03_unbroadcast.py"
    path.write_text("def unbroadcast(grad, shape)\n    return grad\n")
    report = grade(BY_ID["ex03"], path)
    assert report.state == "cannot import" and "SyntaxError" in report.problem and "line 1" in report.problem


LOOPING = {  # ex01 with an infinite loop at import, ex02 with one in its backward
    "ex01_backward.py": "while True:\n    pass\n",
    "ex02_tanh.py": (LESSONS / "solutions" / "ex02_tanh.py").read_text().replace(
        "        return (grad * (1 - self.z * self.z),)", "        while True:\n            pass"),
}


def test_an_infinite_loop_times_out_in_one_line_and_the_others_are_still_graded(tmp_path, capsys):
    from tinyres.cli import main

    assert "while True" in LOOPING["ex02_tanh.py"]
    for name, text in LOOPING.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "ex03_unbroadcast.py").write_text((LESSONS / "solutions" / "ex03_unbroadcast.py").read_text())
    assert main(["check", "--from", str(tmp_path), "--time-limit", "8"]) == 1  # ex03 takes ~1 s
    lines = capsys.readouterr().out.splitlines()
    states = {line.split()[0]: line for line in lines if line[:2] == "ex" and line[2:4].isdigit()}
    assert states["ex03"].endswith("passed") and states["ex04"].endswith("missing")
    for ex in ("ex01", "ex02"):
        assert states[ex].endswith("timed out after 8 s — an infinite loop?"), states[ex]


def test_the_time_limit_is_left_as_it_was_after_grading(tmp_path):
    import signal

    path = tmp_path / "ex01_backward.py"
    path.write_text(LOOPING["ex01_backward.py"])
    before = signal.getsignal(signal.SIGALRM)
    assert grade(BY_ID["ex01"], path, 0.5).problem == "timed out after 0.5 s — an infinite loop?"
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


# ---- the command line ---------------------------------------------------------------------------


def test_check_grades_one_solution_and_exits_0(capsys):
    from tinyres.cli import main

    assert main(["check", "--solutions", "ex03"]) == 0
    out = capsys.readouterr().out
    assert "pass  returns an array of the input's shape" in out and "result: passed" in out


def test_check_fails_a_planted_mistake_with_a_report_and_exits_1(capsys):
    from tinyres.cli import main

    assert main(["check", "--from", str(LESSONS / "solutions" / "wrong"), "ex03"]) == 1
    out = capsys.readouterr().out
    assert out.count("result: failed") == 2  # both planted ex03 files are graded
    assert "smallest failing example: grad" in out and "hint:" in out and "Traceback" not in out


def test_check_lists_every_exercise_with_its_state(tmp_path, capsys):
    from tinyres.cli import main

    for ex in EXERCISES[:3]:
        (tmp_path / ex.filename).write_text((LESSONS / "exercises" / ex.filename).read_text())
    (tmp_path / EXERCISES[0].filename).write_text((LESSONS / "solutions" / EXERCISES[0].filename).read_text())
    assert main(["check", "--from", str(tmp_path)]) == 1  # two stubs are not started
    lines = capsys.readouterr().out.splitlines()
    states = {line.split()[0]: line for line in lines if line[:2] == "ex" and line[2:4].isdigit()}
    assert states["ex01"].endswith("passed") and states["ex02"].endswith("not started")
    assert states["ex07"].endswith("missing") and len(states) == len(EXERCISES)


def test_check_refuses_an_unknown_exercise_in_one_line(capsys):
    from tinyres.cli import main

    assert main(["check", "ex99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown exercise ex99" in err


def test_properties_that_compare_with_pytorch_are_skipped_without_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` now fails
    report = grade(BY_ID["ex07"], LESSONS / "solutions" / BY_ID["ex07"].filename)
    assert report.passed, report.text()
    assert "skip  equals torch.optim.SGD (PyTorch is not installed)" in report.text()


def test_each_lesson_ends_with_its_exercises_and_links_to_its_neighbours():
    lessons = sorted(LESSONS.glob("[0-9][0-9]-*.md"))
    for k, path in enumerate(lessons):
        text = path.read_text()
        assert text.count("## Exercises") == 1, path.name
        section = text.split("## Exercises")[1]
        for ex in EXERCISES:
            if ex.lesson == path.stem[:2]:
                assert f"lessons/exercises/{ex.filename}" in section and f"tinyres check {ex.id}" in section
        if k > 0:
            assert "Previous: [" in section and f"]({lessons[k - 1].name})" in section, path.name
        if k + 1 < len(lessons):
            assert "Next: [" in section and f"]({lessons[k + 1].name})" in section, path.name
    assert {ex.lesson for ex in EXERCISES} <= {p.stem[:2] for p in lessons}
