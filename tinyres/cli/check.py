"""``tinyres check``: grade the lessons' exercises.

``tinyres check`` lists every exercise and its state; ``tinyres check ex05`` grades one
and prints its report (each property passed or failed, the smallest failing example,
the worst index with the expected and the computed value, and a hint). ``--from DIR``
grades the files in another folder: a file counts for an exercise when its name starts
with the exercise's id (``ex05_*.py``), so a folder may hold several attempts at one.
``--solutions`` grades the reference solutions. Each exercise gets ``--time-limit``
seconds (an infinite loop is reported as timed out, and the others are still graded).
The exit status is 0 only when everything graded passes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyres.arguments import positive_float

NAME = "check"
HELP = "grade the lessons' exercises (tinyres check ex05; --from DIR; --solutions)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("exercises", nargs="*", metavar="EXERCISE",
                        help="exercise ids to grade in full, e.g. ex05 (default: list all with their state)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--from", dest="folder", type=Path, metavar="DIR",
                       help="grade the exercise files in DIR instead of lessons/exercises/")
    where.add_argument("--solutions", action="store_true", help="grade the reference solutions")
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
    full = bool(args.exercises)
    if not full:
        print(f"grading {_shown(folder)}/ (tinyres check EXERCISE shows one exercise's full report)")
        print(f"{'exercise':<10}{'lesson':<8}{'what you build':<48}state")
    states: dict[str, int] = {}
    for ex in chosen:
        files = sorted(folder.glob(f"{ex.id}_*.py")) or [folder / ex.filename]
        for path in files:
            report = grade(ex, path, args.time_limit or TIME_LIMIT)
            report.path = Path(_shown(path))
            states[report.state] = states.get(report.state, 0) + 1
            if full:
                print(report.text(), flush=True)
            else:
                title = ex.title if len(files) == 1 else f"{ex.title} [{path.stem}]"
                print(f"{ex.id:<10}{ex.lesson:<8}{title:<48}{report.summary()}", flush=True)
    print("; ".join(f"{state}: {n}" for state, n in states.items()))
    graded = sum(n for state, n in states.items() if state != "missing")
    return 0 if graded and states.get("passed", 0) == graded else 1
