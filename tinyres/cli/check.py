"""``tinyres check``: grade the lessons' exercises.

``tinyres check`` lists every exercise and its state; ``tinyres check ex05`` grades one
and prints its report (each property passed or failed, the smallest failing example,
the worst index with the expected and the computed value, and a hint). ``--from DIR``
grades the files in another folder: a file counts for an exercise when its name starts
with the exercise's id (``ex05_*.py``), so a folder may hold several attempts at one.
``--solutions`` grades the reference solutions and, after each, the mistakes planted in
it (``lessons/solutions/mistakes.py``), each of which must fail the property it names:
that is how CI proves the grader can fail. Each exercise (and each mistake) gets
``--time-limit`` seconds (an infinite loop is reported as timed out, and the others are
still graded). The exit status is 0 only when everything graded passes (and, with
``--solutions``, every planted mistake is caught).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the grader needs hypothesis, an optional dependency: imported when it runs
    from tinyres.grading import Exercise
    from tinyres.grading.mistakes import Mistake

from tinyres.arguments import positive_float

NAME = "check"
HELP = "grade the lessons' exercises (tinyres check ex05; --from DIR; --solutions)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("exercises", nargs="*", metavar="EXERCISE",
                        help="exercise ids to grade in full, e.g. ex05 (default: list all with their state)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--from", dest="folder", type=Path, metavar="DIR",
                       help="grade the exercise files in DIR instead of lessons/exercises/")
    where.add_argument("--solutions", action="store_true",
                       help="grade the reference solutions, and check that each planted mistake fails")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                        help="stop grading an exercise after this long (default: 120)")


def lessons_folder() -> Path:
    """``lessons/`` of the working directory if it has one, else the one beside the package."""
    here = Path.cwd() / "lessons"
    if (here / "exercises").is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "lessons"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> int:
    try:
        from tinyres.grading import BY_ID, EXERCISES, grade
        from tinyres.grading.core import TIME_LIMIT
        from tinyres.grading.mistakes import PatchError, read
    except ModuleNotFoundError as exc:  # hypothesis is an optional dependency
        print(f"tinyres check needs {exc.name}: pip install -e \".[lessons]\"", file=sys.stderr)
        return 2
    folder = args.folder or lessons_folder() / ("solutions" if args.solutions else "exercises")
    if not folder.is_dir():
        print(f"tinyres check: no folder {folder}; run it from the repository's root or pass --from DIR",
              file=sys.stderr)
        return 2
    unknown = [e for e in args.exercises if e not in BY_ID]
    if unknown:
        print(f"tinyres check: unknown exercise {', '.join(unknown)}; the exercises are "
              f"{EXERCISES[0].id} to {EXERCISES[-1].id} (tinyres check lists them)", file=sys.stderr)
        return 2
    chosen = [BY_ID[e] for e in args.exercises] or list(EXERCISES)
    mistakes: tuple[Mistake, ...] = ()
    if args.solutions:
        try:
            mistakes = read(folder / "mistakes.py")
        except PatchError as exc:
            print(f"tinyres check: cannot read the planted mistakes: {exc}", file=sys.stderr)
            return 2
    full = bool(args.exercises)
    if not full:
        planted = " and the mistakes planted in them" if args.solutions else ""
        print(f"grading {_shown(folder)}/{planted} (tinyres check EXERCISE shows one exercise's full report)")
        print(f"{'exercise':<10}{'lesson':<8}{'what you build':<48}state")
    states: dict[str, int] = {}
    limit = args.time_limit or TIME_LIMIT
    for ex in chosen:
        files = sorted(folder.glob(f"{ex.id}_*.py")) or [folder / ex.filename]
        for path in files:
            report = grade(ex, path, limit)
            report.path = Path(_shown(path))
            states[report.state] = states.get(report.state, 0) + 1
            if full:
                print(report.text(), flush=True)
            else:
                title = ex.title if len(files) == 1 else f"{ex.title} [{path.stem}]"
                print(f"{ex.id:<10}{ex.lesson:<8}{title:<48}{report.summary()}", flush=True)
        for mistake in (m for m in mistakes if m.exercise == ex.id):
            verdict = _check_mistake(ex, mistake, folder / ex.filename, full, limit)
            states[verdict] = states.get(verdict, 0) + 1
    print("; ".join(f"{state}: {n}" for state, n in states.items()))
    graded = sum(n for state, n in states.items() if state not in ("missing", "mistakes caught"))
    return 0 if graded and states.get("passed", 0) == graded else 1


def _check_mistake(ex: Exercise, mistake: Mistake, solution: Path, full: bool, limit: float) -> str:
    """Grade one planted mistake; print its report (``full``) or its row; return its state."""
    from tinyres.grading.mistakes import PatchError, caught_by, grade_mistake

    try:
        report = grade_mistake(ex, mistake, solution, limit)
    except PatchError as exc:
        verdict, why = "mistakes not built", f"cannot build it: {exc}"
    else:
        report.path = Path(f"{_shown(solution)} with the planted mistake {mistake.name}")
        failed = caught_by(report, mistake)
        if failed:
            verdict, why = "mistakes caught", f"caught: FAIL {failed}"
        elif any(mistake.fails in r.name for r in report.results if not r.passed):
            # The right property fails, but a learner who made this mistake would be sent elsewhere.
            verdict = "mistakes not caught"
            why = (f'NOT caught: it fails "{mistake.fails}" as it should, but the hint does not name the '
                   f'cause "{mistake.cause}" (hint: {report.hint()[1]})')
        else:
            verdict, why = "mistakes not caught", f'NOT caught: it should fail "{mistake.fails}", ' + (
                "it passes every check" if report.passed else f"it is {report.summary()}")
        if full:
            print(report.text())
    if full:
        print(f"  planted mistake {mistake.name} ({mistake.effect}) {why}", flush=True)
    else:
        print(f"{ex.id:<10}{ex.lesson:<8}{'  planted mistake ' + mistake.name:<48}{why}", flush=True)
    return verdict
