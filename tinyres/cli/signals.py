"""Ctrl-C (SIGINT) and SIGTERM for the command line: one way to stop, whatever the phase.

A batch scheduler ends a job with SIGTERM (then SIGKILL after a grace period); a user
with Ctrl-C. Python's defaults differ: SIGINT raises KeyboardInterrupt wherever the
main thread is, SIGTERM kills the process on the spot (exit -15, no line, a partial
temporary file left behind). ``handled()`` gives both the first behaviour: the handler
raises ``Interrupted`` (a KeyboardInterrupt, so every ``finally`` and the atomic writer's
clean-up run as for Ctrl-C) in the main thread, at the next bytecode, in any phase:
start-up, data loading, Numba's compilation, a step, evaluation, a checkpoint write.
``cli.main`` catches it and prints one line; the exit status is 128 + the signal's
number (130, 143), as a shell reports a process a signal ended.

A handler that lands in a callback whose exceptions Python only prints (hypothesis's gc
callback, under ``tinyres check``) raises the signal again instead, to land outside it.
A second signal while the first is still being handled quits at once: one line, then
``os._exit`` (no clean-up runs: a checkpoint being written stays a temporary file, which
the next write removes, so the last complete checkpoint is what remains).

Python runs handlers only between bytecodes of the main thread: a signal that arrives
during one long call into compiled code (a kernel, an fsync) takes effect when it returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_STATUSES = tuple(128 + s for s in SIGNALS)  # what ``exit_status`` returns: 130, 143


class Interrupted(KeyboardInterrupt):
    """Raised by SIGINT or SIGTERM while ``handled()`` holds; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(err: KeyboardInterrupt) -> int:
    """130 for Ctrl-C (a plain KeyboardInterrupt too), 143 for SIGTERM: 128 + the signal."""
    return 128 + getattr(err, "signum", signal.SIGINT)


def name(err: KeyboardInterrupt) -> str:
    return signal.Signals(getattr(err, "signum", signal.SIGINT)).name


@contextlib.contextmanager
def handled() -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise ``Interrupted`` in the block; the previous handlers come back after it.

    Yields the list of the signals received, so the caller can tell a signal whose
    exception some library swallowed from a run that was never interrupted.
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received:  # the second one: the user (or the scheduler) does not want to wait
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os.write(2, f"\ntinyres: {signal.Signals(signum).name} again: quit at once\n".encode())
            os._exit(128 + signum)
        received.append(signum)
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
        else:
            previous_hook(info)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield received
    finally:
        sys.unraisablehook = previous_hook
        for s, old in previous.items():
            signal.signal(s, old)
