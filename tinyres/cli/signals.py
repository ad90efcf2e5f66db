"""Ctrl-C (SIGINT), SIGTERM and SIGHUP for the command line: one way to stop, whatever the moment.

A batch scheduler ends a job with SIGTERM (then SIGKILL after a grace period); a user with
Ctrl-C; a closed terminal (or a dropped ssh session) with SIGHUP. Python's defaults differ:
SIGINT raises KeyboardInterrupt wherever the main thread is, SIGTERM and SIGHUP kill the
process on the spot (no line, a partial temporary file left behind). Here all three end a
command the same way: the last complete checkpoint kept, one line on stderr, exit status
128 + the signal's number (130, 143, 129), as a shell reports a process a signal ended.
SIGHUP is treated as SIGTERM: the user who closed the terminal expects the run stopped
cleanly, with a checkpoint to resume from; the line is written if stderr still can be
(a closed terminal refuses it: then nothing is said). A signal ignored when the process
starts stays ignored: SIGHUP under ``nohup``, SIGINT in a shell's background job.

Three stretches of a command's life, three handlers:

1. **Start-up** (``import tinyres``: NumPy, Numba, about a second). The console script's
   entry point, ``tinyres_script.script``, installs ``tinyres_script.leave`` (one line, exit)
   before importing anything of tinyres. It has to live outside the ``tinyres`` package:
   importing any ``tinyres.x`` runs ``tinyres/__init__`` first, and that is the second to
   cover. The alternatives were worse: handlers installed by ``tinyres/__init__`` itself would
   change every library user's Ctrl-C, and a lazily importing ``__init__`` (``__getattr__``)
   is the magic the style guide rules out. ``python -m tinyres`` cannot avoid the package's
   ``__init__`` (Python imports a package before its ``__main__``), so ``__init__`` imports
   ``tinyres_script`` first, which installs the same handlers only when the process was
   started as ``python -m tinyres`` (``started_as_module``); for anyone else it does nothing.
   What remains uncovered is the interpreter's own start-up (its ``site`` import, with every
   ``.pth`` file of the environment), before any line of ours runs: tens of milliseconds (180 ms
   measured on a shared machine at load 4.4, 125 ms of it the site import of .pth files and
   editable installs' finders). A signal there meets Python's defaults (SIGINT: "Fatal Python
   error: init_import_site" and a traceback; SIGTERM, SIGHUP: the process ends), with nothing
   of ours started, so nothing written.
2. **The command** (``handled()``, from ``cli.main``'s first line): the handler raises
   ``Interrupted`` (a KeyboardInterrupt, so every ``finally`` and the atomic writer's clean-up
   run as for Ctrl-C) in the main thread, at the next bytecode, in any phase: data loading,
   Numba's compilation, a step, evaluation, a checkpoint write. ``cli.main`` catches it and
   writes the line with ``say``. A second signal before the line quits at once: its own line,
   then ``os._exit`` (no clean-up runs: a checkpoint being written stays a temporary file, which
   the next write removes, so the last complete checkpoint is what remains).
3. **The end** (``say`` and after): while the line is written further signals are ignored, so
   it is neither cut short nor followed by a second one; after it, a signal just leaves with the
   first one's status. ``leave`` covers the script from ``cli.script``'s first line to its
   ``os._exit``, the same way.

A handler that lands in a callback whose exceptions Python only prints (hypothesis's gc
callback, under ``tinyres check``) raises the signal again instead, to land outside it.
Python runs handlers only between bytecodes of the main thread: a signal that arrives during
one long call into compiled code (a kernel, an fsync) takes effect when it returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import tinyres_script

SIGNALS = tinyres_script.SIGNALS  # SIGINT, SIGTERM, SIGHUP
EXIT_STATUSES = tuple(128 + s for s in SIGNALS)  # what ``exit_status`` returns: 130, 143, 129

# The exit status once this process's one line about a signal is out (``say``). Main thread
# only (handlers run there); ``handled()`` empties it, for a program that calls ``main`` twice.
said: list[int] = []


class Interrupted(KeyboardInterrupt):
    """Raised by a signal of ``SIGNALS`` while ``handled()`` holds; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(err: KeyboardInterrupt) -> int:
    """130 for Ctrl-C (a plain KeyboardInterrupt too), 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + getattr(err, "signum", signal.SIGINT)


def name(err: KeyboardInterrupt) -> str:
    return signal.Signals(getattr(err, "signum", signal.SIGINT)).name


def write(text: str) -> None:
    """``text`` on stderr in one system call (after stdout's pending output); never raises."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with contextlib.suppress(OSError):  # a closed terminal (SIGHUP), a closed pipe
        os.write(2, text.encode(errors="replace"))


def say(line: str, status: int) -> None:
    """The one line a signal ends a command with; signals that come while it is written are
    ignored, and from then on one leaves quietly with ``status``."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        current = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
    write(line + "\n")
    said.append(status)
    if on_main_thread:
        for s, handler in current.items():
            signal.signal(s, handler)


def leave(signum: int, frame: object) -> None:
    """Outside ``handled()`` (``cli.script`` before and after ``main``): one line, unless the
    command's line is out already, then exit at once (``os._exit``: see ``cli.script``)."""
    for s in SIGNALS:  # a second signal cannot cut the line short or add one
        signal.signal(s, signal.SIG_IGN)
    end_now(signum)


GRACE_SECONDS = 5.0  # from a signal to the end of the command, at most (then ``end_now``)


def end_now(signum: int) -> None:
    """The command's line for ``signum`` unless it is out already, then leave at once: ``leave``,
    and the watchdog of a command not ended ``GRACE_SECONDS`` after its signal (which runs in a
    thread of its own, where signal handlers cannot be set). As for a second signal, a checkpoint
    being written stays a temporary file; the last complete one is kept."""
    if not said:
        write(tinyres_script.line(signum).decode())
    os._exit(said[0] if said else 128 + signum)


@contextlib.contextmanager
def handled() -> Iterator[list[int]]:
    """Signals raise ``Interrupted`` in the block; the previous handlers come back after it.

    Yields the list of the signals received, so the caller can tell a signal whose
    exception some library swallowed from a run that was never interrupted.
    """
    received: list[int] = []
    watchdogs: list[threading.Timer] = []
    said.clear()

    def handler(signum: int, frame: object) -> None:
        if said:  # the line is out: nothing more to say or wait for
            os._exit(said[0])
        if received:  # the second one: the user (or the scheduler) does not want to wait
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)
            write(f"\ntinyres: {signal.Signals(signum).name} again: quit at once\n")
            os._exit(128 + signum)
        received.append(signum)
        # If the Interrupted never reaches cli.main (a library swallowed it, or the unwinding
        # waits on something that will not come), end the command anyway: seen once in CI, a
        # SIGTERM during the first demo's compilation that was still running 60 s later.
        # Cancelled when the block ends: then the Interrupted did arrive (and a program that calls
        # cli.main in-process, a notebook's cell, goes on).
        watchdog = threading.Timer(GRACE_SECONDS, end_now, (signum,))
        watchdog.daemon = True
        watchdogs.append(watchdog)
        watchdog.start()
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield received
        return

    def unraisable(info: Any) -> None:
        # The handler ran inside a callback whose exceptions Python only prints (a gc callback,
        # a __del__): raise the signal again, to land outside it, instead of printing a traceback.
        if isinstance(info.exc_value, Interrupted):
            received.clear()  # sent by a helper thread 10 ms on: after this hook has returned
            threading.Timer(0.01, os.kill, (os.getpid(), info.exc_value.signum)).start()
        elif not (received or said):  # after a signal, quiet: an object it left half-built (seen:
            previous_hook(info)  # llvmlite's, mid-compile) reports itself when it is collected

    previous = {s: signal.signal(s, handler) for s in SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield received
    finally:
        for watchdog in watchdogs:
            watchdog.cancel()
        sys.unraisablehook = previous_hook
        for s, old in previous.items():
            signal.signal(s, old)
