"""``tinyres lessons``: the lessons as Jupyter notebooks, opened in JupyterLab.

The Markdown lessons are the source; the notebooks are made from them each time (into
``lessons/notebooks/``, which git ignores), so they can never drift from the lessons
that CI tests. jupytext turns each ```` ```python ```` block into a code cell and the
text between into Markdown cells; two things the test runner understands become
notebook equivalents:

- a ```` ```pycon ```` transcript (``>>> x`` followed by its printed output, which the
  tests check as a doctest; plain jupytext keeps it as text) becomes code cells, one per
  example, whose output the notebook shows when run (an expected error is caught and printed);
- ``<!-- skip: next if(condition, reason=...) -->`` (a block that needs an optional
  package, or uses what such a block made) keeps its code, gains a comment saying when it
  is skipped and the cell tag ``raises-exception``, so "run all" goes on past it;
  ``--execute`` skips it only when the condition holds, and the cell's output says why.

The figures the lessons link (``figures/``) are copied beside the notebooks, so the links
work there too. ``--site DIR`` builds the course's web site from the executed notebooks
(``docs/site.py``).

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
# A console transcript inside a Markdown cell (jupytext leaves ```pycon fences as text).
PYCON = re.compile(r"^```pycon[ \t]*\n(.*?)^```[ \t]*(?:\n|$)", re.MULTILINE | re.DOTALL)
# Every code block of a lesson with the skip marker before it, for dependency_problems.
BLOCK = re.compile(r"(?:<!--\s*skip:\s*next\s+if\((?P<condition>.*?),\s*reason=(?P<reason>.*?)\)\s*-->\s*\n)?"
                   r"^```(?P<language>python|pycon)[ \t]*\n(?P<source>.*?)^```[ \t]*$",
                   re.MULTILINE | re.DOTALL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="LESSON",
                        help="lessons to convert, by number or file name (default: all)")
    parser.add_argument("--out", type=Path, help="folder for the notebooks (default: lessons/notebooks/)")
    parser.add_argument("--execute", action="store_true",
                        help="run each notebook through a Jupyter kernel instead of opening JupyterLab")
    parser.add_argument("--no-open", action="store_true", help="only write the notebooks")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell with --execute")
    parser.add_argument("--site", type=Path, metavar="DIR",
                        help="build the course's web site into DIR, running the lessons first "
                             "(pip install -e \".[docs]\")")
    parser.add_argument("--notebooks", type=Path, metavar="DIR",
                        help="with --site: notebooks that `--execute --out DIR` ran, instead of running them")


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


def _pieces(markdown: str) -> list[tuple[str, str]]:
    """A Markdown cell's text cut at its ```pycon transcripts: ("markdown" | "pycon", text) pairs."""
    pieces, start = [], 0
    for match in PYCON.finditer(markdown):
        pieces.append(("markdown", markdown[start:match.start()]))
        pieces.append(("pycon", match.group(1)))
        start = match.end()
    pieces.append(("markdown", markdown[start:]))
    return pieces


def to_notebook(path: Path):
    """The notebook of one Markdown lesson (an nbformat NotebookNode)."""
    import jupytext
    import nbformat

    notebook = jupytext.read(path, fmt="md")
    cells, skip = [], None

    def add_code(sources: list[str]) -> None:
        nonlocal skip
        for source in sources:
            code = nbformat.v4.new_code_cell(source)
            if skip is not None:
                condition, reason = skip
                code.source = f"# Skipped if {reason}.\n{code.source}"
                code.metadata["tags"] = ["raises-exception"]  # "run all" goes on past it
                code.metadata["skip_if"] = condition
                code.metadata["skip_reason"] = reason
            cells.append(code)
        skip = None

    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            is_doctest = cell.source.lstrip().startswith(">>>")
            add_code(doctest_to_code(cell.source) if is_doctest else [cell.source])
            continue
        for kind, text in _pieces(cell.source):
            if kind == "pycon":
                add_code(doctest_to_code(text))
                continue
            match = SKIP.search(text.rstrip())
            if match:
                skip = (match.group(1).strip(), match.group(2).strip().strip("'\""))
                text = text.rstrip()[: match.start()]
            if text.strip():
                cells.append(nbformat.v4.new_markdown_cell(text.strip("\n")))
    # Show the figures a cell returns (tinyres.viz's are bare Figures, which only the inline
    # backend's formatter displays) as well as those pyplot makes.
    setup = nbformat.v4.new_code_cell("%matplotlib inline")
    setup.metadata["tags"] = ["remove-cell"]  # the web site leaves it out; the figures stay
    notebook.cells = [setup, *cells]
    notebook.metadata.pop("jupytext", None)  # a made notebook, not a paired one: edits stay in it
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.validate(notebook)
    return notebook


def _names(code: str) -> tuple[set[str], set[str]]:
    """The names a block binds at the top level, and the outside names it reads (any scope)."""
    import builtins
    import symtable

    top = symtable.symtable(code, "<block>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    read: set[str] = set()
    tables = [(top, True)]
    while tables:
        table, is_top = tables.pop()
        read |= {s.get_name() for s in table.get_symbols() if s.is_referenced() and (is_top or s.is_global())}
        tables += [(child, False) for child in table.get_children()]
    return bound, read - set(dir(builtins))


def dependency_problems(path: Path) -> list[str]:
    """Blocks that run although they read a name only a skipped block defines.

    Such a block fails with a NameError exactly where the optional package is missing (the
    learner's machine), so it must carry the skip marker of the block it depends on.
    """
    text = path.read_text()
    made_by_skipped: dict[str, str] = {}  # name -> condition of the skipped block that binds it
    problems = []
    for block in BLOCK.finditer(text):
        source = block["source"]
        if block["language"] == "pycon":
            source = "\n".join(e.source for e in doctest.DocTestParser().get_examples(source))
        bound, read = _names(source)
        condition = block["condition"]
        if condition is not None:
            made_by_skipped.update(dict.fromkeys(bound, condition.strip()))
            continue
        needed = sorted((read - bound) & made_by_skipped.keys())
        if needed:
            line = text.count("\n", 0, block.start()) + 1
            conditions = sorted({made_by_skipped[n] for n in needed})
            problems.append(f"{path.name}:{line}: the block reads {', '.join(needed)}, made only by a block "
                            f"skipped if({' or '.join(conditions)}): give it that skip marker too")
        for name in bound:
            made_by_skipped.pop(name, None)
    return problems


def execute(notebook, folder: Path, timeout: int) -> None:
    """Run every cell in a fresh kernel, working directory ``folder``; raise on an error.

    A cell the lesson's tests skip under a condition (``skip_if``) is skipped when the
    kernel finds the condition true (its code stays; its output says why), and otherwise
    must run without error, as in the tests.
    """
    import tempfile

    from nbclient import NotebookClient
    from traitlets.config import Config

    with tempfile.TemporaryDirectory() as sockets:
        # Local sockets, not TCP: the kernel warns at start that TCP traffic is unencrypted.
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", config=config,
                                resources={"metadata": {"path": str(folder)}})
        _run_cells(client, notebook)


def _run_cells(client, notebook) -> None:
    """Each code cell in order, in the client's one kernel; see ``execute``."""
    import nbformat

    with client.setup_kernel(env=_kernel_env()):
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            condition = cell.metadata.get("skip_if")
            if condition is not None:
                probe = nbformat.v4.new_code_cell(f"print(bool({condition}))")
                client.execute_cell(probe, index)
                notebook.cells[index] = cell  # nbclient stored the probe in the cell's place
                if "True" in "".join(o.get("text", "") for o in probe.outputs):
                    reason = cell.metadata.get("skip_reason", condition)
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                           text=f"Skipped: {reason}.\n")]
                    continue
                cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "raises-exception"]
            client.execute_cell(cell, index)


def _kernel_env() -> dict[str, str]:
    """The kernel's environment: this one, with the figures drawn off-screen at a fixed size."""
    import os

    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend shows figures in the notebook
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # else the debugger warns at every kernel start
    return env


def _first_error(exc: Exception) -> str:
    """One line from nbclient's CellExecutionError: the exception's name and message."""
    name, value = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    return " ".join(f"{name}: {value}".split())[:300]


def run(args: argparse.Namespace) -> int:
    try:
        import jupytext  # noqa: F401
        import nbformat  # noqa: F401
    except ModuleNotFoundError as exc:
        print(f"tinyres lessons needs {exc.name}: pip install -e \".[lessons]\"", file=sys.stderr)
        return 2
    folder = lessons_folder()
    try:
        paths = lesson_files(folder, args.names)
    except ValueError as exc:
        print(f"tinyres lessons: {exc}", file=sys.stderr)
        return 2
    if args.site is not None:
        return _site(args, folder, paths)
    out = args.out or folder / "notebooks"
    failures = _write(paths, out, folder, args.execute, args.timeout)
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


def _write(paths: list[Path], out: Path, folder: Path, run: bool, timeout: int) -> int:
    """Convert (and with ``run``, execute) each lesson into ``out``; the number that failed."""
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    if (folder / "figures").is_dir():  # the lessons link figures/NAME.png: the same links work here
        shutil.copytree(folder / "figures", out / "figures", dirs_exist_ok=True)
    failures = 0
    for path in paths:
        notebook = to_notebook(path)
        target = out / f"{path.stem}.ipynb"
        nbformat.write(notebook, target)
        if not run:
            continue
        start = time.perf_counter()
        try:
            execute(notebook, folder, timeout)
        except Exception as exc:
            failures += 1
            print(f"{path.stem}: FAIL ({_first_error(exc)})", flush=True)
        else:
            nbformat.write(notebook, target)  # with its outputs
            seconds = time.perf_counter() - start
            print(f"{path.stem}: ran {len(notebook.cells)} cells ({seconds:.0f} s)", flush=True)
    return failures


def _site(args: argparse.Namespace, folder: Path, paths: list[Path]) -> int:
    """``--site DIR``: run the lessons (or take ``--notebooks``), then build the web site."""
    import tempfile

    try:
        import mathjax  # noqa: F401
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401

        from tinyres.cli import site
    except ModuleNotFoundError as exc:
        print(f"tinyres lessons --site needs {exc.name}: pip install -e \".[docs]\"", file=sys.stderr)
        return 2
    if args.names:
        print("tinyres lessons --site builds every lesson: leave out the lesson names", file=sys.stderr)
        return 2
    if args.notebooks is not None:
        missing = [p.stem for p in paths if not (args.notebooks / f"{p.stem}.ipynb").is_file()]
        if missing:
            print(f"tinyres lessons --site: no notebook of {', '.join(missing)} in {args.notebooks} "
                  f"(make them with tinyres lessons --execute --out {args.notebooks})", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        notebooks = args.notebooks
        if notebooks is None:
            notebooks = Path(tmp)
            if _write(paths, notebooks, folder, True, args.timeout):
                print("tinyres lessons --site: a lesson failed, so no site was built", file=sys.stderr)
                return 1
        try:
            seconds = site.build(folder.parent, args.site, notebooks, paths)
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"tinyres lessons --site: {exc}", file=sys.stderr)
            return 1
    size = sum(f.stat().st_size for f in args.site.rglob("*") if f.is_file())
    print(f"site built in {seconds:.0f} s into {args.site} ({size / 2**20:.1f} MiB): "
          f"open {args.site / 'index.html'}")
    return 0
