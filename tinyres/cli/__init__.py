"""The ``tinyres`` command line: one sub-command per module in this package.

Each sub-command module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; adding a command means adding its module to ``COMMANDS``.

Errors, for every command alike (``main`` handles them, so a command only raises):

- a bad argument is refused while parsing (range-checked types in ``cli.args``), or
  by a ``UsageError`` from ``run``: one line on stderr, exit code 2;
- anything else that fails while a command runs (a damaged ``--resume`` checkpoint,
  an ``--out`` that cannot be written, a model that refuses the input): one line
  ``tinyres COMMAND: error: ...`` on stderr, exit code 1;
- ``--debug`` (before or after the command's name) shows the traceback instead;
- Ctrl-C (SIGINT), SIGTERM or SIGHUP, at any moment: one line ``tinyres COMMAND: interrupted by
  SIGINT`` (plus what the command's optional ``interrupted(args) -> str`` adds, e.g. which
  checkpoint to resume from), exit code 130, 143 or 129 (``cli.signals``); a second one quits at once.
  The console script then leaves without the interpreter's clean-up (``script``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from tqdm import tqdm

import tinyres_script
from tinyres import phases
from tinyres.arguments import Parser, UsageError, add_debug_option
from tinyres.cli import bench, check, demo, draw, gradcheck_report, lessons, signals, summary, train
from tinyres.kernels.threads import load_numba_blas

COMMANDS = [demo, gradcheck_report, summary, draw, train, bench, check, lessons]
MESSAGE_LIMIT = 400  # characters: a list of 300 missing keys is not one clear line


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tinyres",
        description="Residual networks from scratch: demos, checks, summaries, training.",
    )
    add_debug_option(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        add_debug_option(p)
        command.add_arguments(p)
        p.set_defaults(run=command.run, interrupted=getattr(command, "interrupted", None))
    return parser


def one_line(err: BaseException) -> str:
    """The exception's message on one line, capped; its type where the message alone is unclear."""
    text = " ".join(str(err).split())
    if not isinstance(err, (ValueError, OSError, UsageError, ImportError, FloatingPointError)) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def close_progress_bars() -> None:
    """End the line of every progress bar an exception left open, so the message gets a line of its own."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def script() -> None:
    """``python -m tinyres`` and the console script (through ``tinyres_script.script``): ``main()``,
    then exit with its status.

    A signal outside ``main`` (before it, or once it has returned) ends the process with one line
    (``signals.leave``). After a signal, leave at once (``os._exit``) once the line is out: the
    exception has already unwound every ``finally`` (the checkpoint is kept), but the signal may
    have landed inside a half-built object of a library (seen: llvmlite's compiler options, during
    Numba's compilation) whose ``__del__`` prints a traceback when the interpreter's clean-up
    collects it.
    """
    tinyres_script.install(signals.leave)
    status = main()
    if status in signals.EXIT_STATUSES:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)
    sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    # The handlers come first, so a signal at any moment from here on ends the same way.
    with signals.handled() as received:
        args = None
        try:
            parser = build_parser()
            phases.reached("arguments")
            args = parser.parse_args(argv)  # --help and a bad argument leave here (SystemExit)
            if not hasattr(args, "run"):
                parser.print_help()
                return 0
            phases.watch_compilation()
            load_numba_blas()  # before the command fills memory (see its docstring)
            phases.reached("start-up")
            status = int(args.run(args) or 0)
            if received:  # a library swallowed the KeyboardInterrupt: still stop as interrupted
                raise signals.Interrupted(received[0])
            return status
        except KeyboardInterrupt as err:
            phases.reached("interrupted")
            name = args.command if args else tinyres_script.command(sys.argv[1:] if argv is None else argv)
            command = f" {name}" if name else ""
            note = args.interrupted(args) if getattr(args, "interrupted", None) else ""
            with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
                close_progress_bars()
            status = signals.exit_status(err)
            signals.say(f"tinyres{command}: interrupted by {signals.name(err)}{note}", status)
            phases.reached("leaving")
            return status
        except BrokenPipeError:
            # The reader went away (`tinyres check | head`): stop quietly, as Unix tools do, and
            # point stdout at /dev/null so Python's final flush cannot raise again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except Exception as err:  # every failure of a command: one line, unless --debug
            if args is None or args.debug:
                raise
            usage = isinstance(err, UsageError)
            hint = "" if usage else " (--debug shows the traceback)"
            close_progress_bars()
            # One write (print makes two): under mpiexec another rank's line could land between them.
            sys.stderr.write(f"tinyres {args.command}: error: {one_line(err)}{hint}\n")
            return 2 if usage else 1
