"""``tinyres lessons``: the lessons as Jupyter notebooks, opened in JupyterLab.

The Markdown lessons are the source; the notebooks are made from them each time (into
``lessons/notebooks/``, which git ignores), so they can never drift from the lessons
that CI tests. jupytext turns each ```` ```python ```` block into a code cell and the
text between into Markdown cells; two things the test runner understands become
notebook equivalents:

- a doctest block (``>>> x`` followed by its printed output) becomes the plain code,
  whose output the notebook shows when run (an expected error is caught and printed);
- ``<!-- skip: next if(condition, reason=...) -->`` (a block that needs an optional
  package) becomes a comment in the cell and the cell tag ``raises-exception``, so "run
  all" goes on past it; ``--execute`` skips it only when the condition holds.

``tinyres lessons --execute`` runs every notebook through a real Jupyter kernel (what
CI does) and prints one line per lesson.
"""

from __future__ import annotations

import argparse
import doctest
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tinyres.cli.check import lessons_folder

NAME = "lessons"
HELP = "open the lessons as Jupyter notebooks (--execute runs them all through a kernel)"

SKIP = re.compile(r"<!--\s*skip:\s*next\s+if\((.*),\s*reason=(.*)\)\s*-->\s*$", re.DOTALL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="LESSON",
                        help="lessons to convert, by number or file name (default: all)")
    parser.add_argument("--out", type=Path, help="folder for the notebooks (default: lessons/notebooks/)")
    parser.add_argument("--execute", action="store_true",
                        help="run each notebook through a Jupyter kernel instead of opening JupyterLab")
    parser.add_argument("--no-open", action="store_true", help="only write the notebooks")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell with --execute")


def doctest_to_code(source: str) -> list[str]:
    """The examples of a doctest block as code, one cell each, prompts and outputs removed.

    One cell per example, so the notebook shows each one's value as the doctest does. An
    example whose expected output is an exception is wrapped in try/except and prints
    the error, so the notebook shows it and runs on.
    """
    parts = []
    for example in doctest.DocTestParser().get_examples(source):
        code = example.source.rstrip("\n")
        if example.exc_msg is not None:
            body = textwrap.indent(code, "    ")
            code = f"try:\n{body}\nexcept Exception as error:  # the lesson shows this error\n" \
                   f"    print(f\"{{type(error).__name__}}: {{error}}\")"
        parts.append(code)
    return parts


def _is(path: Path, name: str) -> bool:
    """Whether ``name`` ("5", "05", "05-convolution" or "05-convolution.md") names ``path``."""
    return name in (path.stem, path.name) or (name.isdigit() and path.stem[:2] == f"{int(name):02d}")


def lesson_files(folder: Path, names: list[str]) -> list[Path]:
    """The numbered lessons in ``folder``, or those that ``names`` name."""
    every = sorted(folder.glob("[0-9][0-9]-*.md"))
    missing = [n for n in names if not any(_is(p, n) for p in every)]
    if missing:
        raise ValueError(f"no lesson {', '.join(missing)} in {folder}")
    return [p for p in every if not names or any(_is(p, n) for n in names)]


def to_notebook(path: Path):
    """The notebook of one Markdown lesson (an nbformat NotebookNode)."""
    import jupytext
    import nbformat

    notebook = jupytext.read(path, fmt="md")
    cells, skip = [], None
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = SKIP.search(cell.source)
            if match:
                skip = (match.group(1).strip(), match.group(2).strip().strip("'\""))
                cell.source = cell.source[: match.start()].rstrip()
                if not cell.source:
                    continue
            cells.append(cell)
            continue
        sources = doctest_to_code(cell.source) if cell.source.lstrip().startswith(">>>") else [cell.source]
        for source in sources:
            code = nbformat.v4.new_code_cell(source)
            if skip is not None:
                condition, reason = skip
                code.source = f"# The lesson's tests skip this cell if {reason}\n{code.source}"
                code.metadata["tags"] = ["raises-exception"]
                code.metadata["skip_if"] = condition
            cells.append(code)
        skip = None
    notebook.cells = cells
    notebook.metadata.pop("jupytext", None)  # a made notebook, not a paired one: edits stay in it
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.validate(notebook)
    return notebook


def execute(notebook, folder: Path, timeout: int) -> None:
    """Run every cell in a fresh kernel, working directory ``folder``; raise on an error.

    A cell the lesson's tests skip under a condition (``skip_if``) is skipped when the
    kernel finds the condition true, and otherwise must run without error, as in the tests.
    """
    import nbformat
    from nbclient import NotebookClient

    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            condition = cell.metadata.get("skip_if")
            if condition is not None:
                probe = nbformat.v4.new_code_cell(f"print(bool({condition}))")
                client.execute_cell(probe, index)
                if "True" in "".join(o.get("text", "") for o in probe.outputs):
                    continue
                cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "raises-exception"]
            client.execute_cell(cell, index)


def _first_error(exc: Exception) -> str:
    """One line from nbclient's CellExecutionError: the exception's name and message."""
    name, value = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    return " ".join(f"{name}: {value}".split())[:300]


def run(args: argparse.Namespace) -> int:
    try:
        import jupytext  # noqa: F401
        import nbformat
    except ModuleNotFoundError as exc:
        print(f"tinyres lessons needs {exc.name}: pip install -e \".[lessons]\"", file=sys.stderr)
        return 2
    folder = lessons_folder()
    try:
        paths = lesson_files(folder, args.names)
    except ValueError as exc:
        print(f"tinyres lessons: {exc}", file=sys.stderr)
        return 2
    out = args.out or folder / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in paths:
        notebook = to_notebook(path)
        target = out / f"{path.stem}.ipynb"
        nbformat.write(notebook, target)
        if not args.execute:
            continue
        start = time.perf_counter()
        try:
            execute(notebook, folder, args.timeout)
        except Exception as exc:
            failures += 1
            print(f"{path.stem}: FAIL ({_first_error(exc)})", flush=True)
        else:
            nbformat.write(notebook, target)  # with its outputs
            seconds = time.perf_counter() - start
            print(f"{path.stem}: ran {len(notebook.cells)} cells ({seconds:.0f} s)", flush=True)
    if args.execute:
        return 1 if failures else 0
    print(f"notebooks written to {out}")
    if args.no_open:
        return 0
    lab = shutil.which("jupyter-lab")
    if lab is None:
        print("JupyterLab is not installed: pip install -e \".[lessons]\"", file=sys.stderr)
        return 2
    return subprocess.call([lab, str(out)])
