"""Named points of a long run where a test can make the process wait for a signal.

Tests of Ctrl-C, SIGTERM and SIGHUP (tests/test_faults.py) need the signal to land in a
chosen phase: ``arguments`` (being parsed), ``start-up``, ``data`` (loading), ``compilation``
(Numba's, in a fresh cache), ``step``, ``evaluation``, ``checkpoint-write``, ``interrupted``
(winding down after a first signal) or ``leaving`` (its one line is out). With
``TINYRES_PAUSE_AT=PHASE`` (or ``PHASE#N``: its N-th arrival; several separated by commas) in
the environment, the process prints ``tinyres: paused at PHASE`` on stderr when it gets there
and sleeps until a signal ends the sleep (at most 60 s, then it carries on). Without the
variable, ``reached`` reads the environment and returns.
"""

from __future__ import annotations

import os
import sys
import time

VARIABLE = "TINYRES_PAUSE_AT"
_arrivals: dict[str, int] = {}  # main thread only: the phases are all reached there


def reached(phase: str) -> None:
    """Pause here if the environment asks for ``phase`` (and this is its asked-for arrival)."""
    wanted = [w.partition("#") for w in os.environ.get(VARIABLE, "").split(",")]
    nth = [int(n or 1) for name, _, n in wanted if name == phase]
    if not nth:
        return
    _arrivals[phase] = _arrivals.get(phase, 0) + 1
    if _arrivals[phase] in nth:
        sys.stderr.write(f"tinyres: paused at {phase}\n")  # one write: a signal cannot split the line
        sys.stderr.flush()
        # Short naps: a signal the kernel hands to another thread (OpenBLAS's, the pool's) does
        # not cut the main thread's sleep short; its Python handler runs at the next wake-up.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)


def watch_compilation() -> None:
    """With ``TINYRES_PAUSE_AT=compilation``: pause when Numba starts compiling a kernel."""
    if "compilation" not in os.environ.get(VARIABLE, ""):
        return
    from numba.core import event

    class Pause(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            reached("compilation")

        def on_end(self, ev: event.Event) -> None:
            pass

    event.register("numba:compile", Pause())
