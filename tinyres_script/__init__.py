"""The ``tinyres`` console script's entry point: the signal handlers first, then the package.

``import tinyres`` takes a second (NumPy, Numba); a signal in that second would get Python's
defaults (a KeyboardInterrupt traceback, or death by SIGTERM with no line). So the script's
entry point lives outside the ``tinyres`` package, whose ``__init__`` would otherwise run
first, and installs ``leave`` before anything else is imported. Why here and not elsewhere:
tinyres/cli/signals.py. This module imports only the standard library and does nothing at
import, except in a process started as ``python -m tinyres`` (the last lines: there Python
imports the package before its ``__main__``, and ``tinyres/__init__`` imports this first).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable

# SIGHUP: a closed terminal (not on Windows, whose Python has no SIGHUP).
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def command(argv: list[str]) -> str:
    """The command's name as the arguments (not yet parsed) give it: the first that is no option."""
    return next((a for a in argv if not a.startswith("-")), "")


def line(signum: int) -> bytes:
    """``tinyres COMMAND: interrupted by SIGTERM``."""
    name = command(sys.argv[1:])
    return f"tinyres{' ' if name else ''}{name}: interrupted by {signal.Signals(signum).name}\n".encode()


def leave(signum: int, frame: object) -> None:
    """During start-up: one line, exit 128 + the signal's number. Nothing is written yet, so
    nothing needs cleaning up; ``os._exit`` also skips a half-imported library's clean-up."""
    for s in SIGNALS:  # a second signal cannot cut the line short or add one
        signal.signal(s, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
        os.write(2, line(signum))
    os._exit(128 + signum)


def install(handler: Callable[[int, object], None] = leave) -> None:
    """``handler`` (by default ``leave``) for each signal not ignored: under ``nohup`` SIGHUP stays
    ignored, and so does SIGINT in a shell's background job (as Python itself leaves it)."""
    for s in SIGNALS:
        if signal.getsignal(s) != signal.SIG_IGN:
            signal.signal(s, handler)


def started_as_module() -> bool:
    """True while ``python -m tinyres`` imports the package: Python sets ``sys.argv[0]`` to ``-m``
    until it has found the package's ``__main__``, and the original command line names it."""
    if sys.argv[:1] != ["-m"]:
        return False
    args = sys.orig_argv[1:]
    for i, arg in enumerate(args):
        if arg.startswith("-m"):
            return (arg[2:] or (args[i + 1] if i + 1 < len(args) else "")) == "tinyres"
    return False


def script() -> None:
    """The ``tinyres`` command (``[project.scripts]`` in pyproject.toml)."""
    install()
    from tinyres.cli import script as run  # the second this takes is now covered

    run()


if started_as_module():  # `python -m tinyres`: the package's first import, before its second of imports
    install()
