"""Planted mistakes: wrong solutions the grader must fail, each a small patch of its solution.

A planted mistake proves that a check can fail. It is written as a list of replacements
(old text -> new text) applied to the source of its exercise's reference solution when
grading, so a fix to a solution reaches every mistake planted in it, and a mistake stays
one or two visible lines. They are listed in ``lessons/solutions/mistakes.py``.

Patching is strict: each old text must occur exactly once in the source as patched so far,
and the result must differ from the solution. An edit of the solution that moves or
rewrites a patched line makes the build refuse loudly, instead of silently grading the
correct solution as if it were the mistake.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tinyres.grading.core import TIME_LIMIT, Exercise, Report, grade, load


class PatchError(ValueError):
    """A planted mistake cannot be built from its solution's source."""


@dataclass(frozen=True)
class Mistake:
    """A wrong solution: ``replace`` applied in order to the reference solution of ``exercise``.

    ``fails`` is a few words of the property that the grader must fail on it: a mistake
    that fails only other properties, or none, shows that a check is missing. ``cause``
    is a few words the report's hint must hold: the cause named from the combination of
    properties that fail (empty: any hint).
    """

    exercise: str  # "ex11"
    name: str  # "no_mean_term": the wrong module is graded as ex11_no_mean_term.py
    effect: str  # what goes wrong, in one sentence
    fails: str
    replace: tuple[tuple[str, str], ...]
    cause: str = ""

    @property
    def filename(self) -> str:
        return f"{self.exercise}_{self.name}.py"


def patch(mistake: Mistake, source: str) -> str:
    """``source`` with ``mistake``'s replacements applied; PatchError unless each old text occurs
    exactly once and the result differs from ``source``."""
    patched = source
    for old, new in mistake.replace:
        found = patched.count(old)
        if found != 1:
            where = "is not found" if found == 0 else f"is found {found} times"
            raise PatchError(
                f"planted mistake {mistake.filename}: the text to replace {where} in the solution, "
                f"expected exactly once: {old!r}"
            )
        patched = patched.replace(old, new)
    if patched == source:
        raise PatchError(f"planted mistake {mistake.filename} changes nothing in the solution")
    return patched


@contextmanager
def planted(mistake: Mistake, solution: Path) -> Iterator[Path]:
    """The wrong module as a file ``exNN_<name>.py`` in a temporary folder, while the block runs.

    A real file (not source compiled from a string) so that a report can quote the line
    of the mistake that raised, as it does for a learner's file.
    """
    if not Path(solution).is_file():
        raise PatchError(f"planted mistake {mistake.filename}: no solution {solution} to patch")
    source = patch(mistake, Path(solution).read_text())
    with tempfile.TemporaryDirectory(prefix="tinyres-mistake-") as folder:
        path = Path(folder) / mistake.filename
        path.write_text(source)
        yield path


def read(path: Path) -> tuple[Mistake, ...]:
    """The ``MISTAKES`` listed in ``path`` (``lessons/solutions/mistakes.py``); PatchError if
    the file is missing, does not import, or lists anything but Mistakes, or one twice."""
    path = Path(path)
    if not path.is_file():
        raise PatchError(f"no file {path}")
    try:
        mistakes = load(path).MISTAKES
    except Exception as exc:  # a teacher's typo in the list: one line, not a traceback
        raise PatchError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from None
    if not isinstance(mistakes, tuple) or not all(isinstance(m, Mistake) for m in mistakes):
        raise PatchError(f"{path}: MISTAKES must be a tuple of Mistake, got {type(mistakes).__name__}")
    names = [m.filename for m in mistakes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PatchError(f"{path}: planted mistakes listed twice: {', '.join(twice)}")
    return mistakes


def grade_mistake(exercise: Exercise, mistake: Mistake, solution: Path, limit: float = TIME_LIMIT) -> Report:
    """Grade the mistake built from ``solution``, in ``limit`` seconds at most."""
    with planted(mistake, solution) as path:
        return grade(exercise, path, limit)


def caught_by(report: Report, mistake: Mistake) -> str | None:
    """The name of the failed property that holds ``mistake.fails``; None if none failed, or
    if the report's hint does not name ``mistake.cause``."""
    failed = [r.name for r in report.results if not r.passed and mistake.fails in r.name]
    if report.state != "failed" or not failed or mistake.cause not in report.hint()[1]:
        return None
    return failed[0]
