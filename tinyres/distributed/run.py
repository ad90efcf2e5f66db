"""``python -m tinyres.distributed.run -n N PROGRAM``: ``mpiexec -n N python PROGRAM``, whose failure
is one line.

``PROGRAM`` is what follows ``python``: ``prog.py ARGS`` or ``-m tinyres train ARGS``. The
ranks' output passes through as it comes (progress bars too). What changes is a failure:

- a rank killed by a signal it cannot catch (``kill -9``, a segfault): MPICH's launcher,
  hydra, ends the other ranks within a second but prints a banner of 11 lines naming a
  process id; here it becomes ``tinyres: rank 1 of 2 (pid 4242 on HOST) was killed by SIGKILL;
  every rank stopped`` (and, for ``tinyres train``, which checkpoint to resume from), exit 137
  (128 + the signal, as a shell reports it);
- a rank that raises, or gets SIGTERM or SIGINT, prints its own line (``tinyres.distributed``
  does so under plain ``mpiexec`` too) and the others are ended; several ranks failing at once
  (Ctrl-C reaches them all) would print one line each: only the first is shown;
- hydra's other lines about the ending (``Sending Ctrl-C to processes``) are dropped;
- a rank that ends with a non-zero status without a word (``os._exit(3)``): hydra ends the
  others and says nothing; here one line says so.

Why a launcher: hydra prints its banner whenever a process ends by a signal, and nothing in
its options (``mpiexec --help``) or environment (the ``HYDRA_*`` variables) turns it off;
``-disable-auto-cleanup`` drops the banner but keeps its last 3 lines, "YOUR APPLICATION
TERMINATED WITH THE EXIT STRING: Killed (signal 9)" and two lines of advice. Why not
``torchrun``'s way (a process of our own watching the ranks): MPI already starts, connects
and watches them; this only reads what ``mpiexec`` prints.

Ctrl-C reaches this process alone (``mpiexec`` runs in a session of its own) and is passed to
``mpiexec``, which passes it to every rank; a second Ctrl-C kills them at once, as
``mpiexec``'s does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO

from tinyres.distributed import RUN_MARK, is_failure_line

USAGE = "usage: python -m tinyres.distributed.run -n N (prog.py | -m module) [ARGS...]"

# What hydra prints when a rank ends badly (src/pm/hydra/mpiexec: pmiserv_cb.c and mpiexec.c),
# and its answer to a first Ctrl-C. (MPICH's line for a program's own MPI_Abort stays: tinyres
# never calls it, so there it is the only word on why the run ended.)
HYDRA = re.compile(r"^(={60,}\s*$"
                   r"|=   (BAD TERMINATION|PID \d+ RUNNING AT|EXIT CODE:|CLEANING UP|YOU CAN IGNORE)"
                   r"|YOUR APPLICATION TERMINATED WITH THE EXIT STRING:|This typically refers to a problem "
                   r"with your application|Please see the FAQ page"
                   r"|\[mpiexec@[^]]*\] (Sending Ctrl-C|Press Ctrl-C again))")
KILLED = re.compile(r"^=   PID (\d+) RUNNING AT (\S+)")
# Where a line of tinyres starts: a rank that prints its line in two writes (Python's print:
# the text, then "\n") may have another rank's line land between them.
STARTS = re.compile(r"(?=tinyres[\w.]*(?: \w+)?: )")
SIGNALLED = re.compile(r"\(signal (\d+)\)|^=   EXIT CODE: (\d+)")


def checkpoint_note(path: str | os.PathLike) -> str:
    """Where to resume from (the end of the line after a stop): what ``path`` holds now.

    Checkpoints are written atomically, so the file holds the last completed epoch
    whatever moment the run was stopped at.
    """
    from tinyres.serialization import load

    try:
        epoch = load(path)["epoch"]
    except FileNotFoundError:
        return f"; nothing to resume yet (no {path})"
    except (OSError, ValueError, KeyError, TypeError, MemoryError):
        return f"; {path} is as it was before this run"
    return f"; {path} holds epoch {epoch}: continue with the same options and --resume"


class Relay:
    """Passes the ranks' output through, keeping back hydra's lines and every failure line but the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ranks: dict[str, tuple[int, int]] = {}  # "pid@host" -> (rank, world size)
        self.checkpoint: str | None = None
        self.reported = False  # a rank's own failure line went out
        self.killed: tuple[str, str] | None = None  # (pid, host) of hydra's banner
        self.signum: int | None = None
        self.ends_line: dict[BinaryIO, bool] = {}  # whether the last thing written ended a line
        self.owed: dict[BinaryIO, int] = {}  # line ends still to come of lines cut by another's

    def segment(self, text: str, out: BinaryIO, held: list[str]) -> None:
        """One line (ending in "\\n" or a progress bar's "\\r") of mpiexec's stdout or stderr."""
        line = text.rstrip("\r\n")
        with self.lock:
            if RUN_MARK in line:  # after another rank's unfinished line, maybe
                before, _, told = line.partition(RUN_MARK)
                self.write(out, before)
                key, _, value = told.strip().partition(" ")
                if key == "rank":
                    rank, world, pid, host = value.split()
                    self.ranks[f"{pid}@{host}"] = (int(rank), int(world))
                elif key == "checkpoint":
                    self.checkpoint = value
                return
            if HYDRA.match(line):
                held.clear()  # the blank line hydra puts before its banner
                if KILLED.match(line):
                    self.killed = KILLED.match(line).groups()  # type: ignore[union-attr]
                found = SIGNALLED.search(line)
                if found and self.signum is None:
                    self.signum = int(found.group(1) or found.group(2)) & 0x7F
                return
            if not line and self.owed.get(out):  # the end of a line whose rest came glued before it
                self.owed[out] -= 1
                return
            kept, at = "", 0
            for part in STARTS.split(line):
                at += len(part)
                if is_failure_line(part):
                    if self.reported:  # a second rank's line about the same ending
                        self.owed[out] = self.owed.get(out, 0) + (at > len(part))
                        continue
                    self.reported = True
                kept += part
            if kept != line:
                if not kept:
                    return
                text = kept + text[len(line):]
                line = kept
            if not line and text.endswith("\n"):  # hold a blank line until we see what follows
                self.write(out, "".join(held))
                held[:] = [text]
                return
            self.write(out, "".join(held) + text)
            held.clear()

    def write(self, out: BinaryIO, text: str) -> None:
        if text:
            out.write(text.encode())
            out.flush()
            self.ends_line[out] = text.endswith("\n")

    def pump(self, source: BinaryIO, out: BinaryIO) -> None:
        """Read ``source`` to its end, one segment at a time, as it comes."""
        held: list[str] = []
        pending = b""
        while chunk := os.read(source.fileno(), 1 << 16):
            pending += chunk
            while (cut := max(pending.rfind(b"\n"), pending.rfind(b"\r"))) >= 0:
                ready, pending = pending[:cut + 1], pending[cut + 1:]
                for part in re.findall(rb"[^\r\n]*(?:\r\n|\r|\n)", ready):
                    self.segment(part.decode(errors="replace"), out, held)
        if pending:
            self.segment(pending.decode(errors="replace"), out, held)
        with self.lock:
            self.write(out, "".join(held))

    def last_line(self, status: int) -> str | None:
        """The one line for a rank that ended without a word (None when a rank said why itself)."""
        if self.reported or (self.killed is None and status == 0):
            return None
        if self.killed is None:
            return f"tinyres: a rank ended with status {status} and said nothing; every rank stopped"
        pid, host = self.killed
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        if f"{pid}@{host}" in self.ranks:
            rank, world = self.ranks[f"{pid}@{host}"]
            who = f"rank {rank} of {world} (pid {pid} on {host})"
        else:  # killed before it joined the process group
            who = f"a rank (pid {pid} on {host})"
        note = checkpoint_note(self.checkpoint) if self.checkpoint else ""
        return f"tinyres: {who} was killed by {name}; every rank stopped{note}"


def parse(argv: list[str]) -> tuple[int, list[str]]:
    """``-n N PROGRAM...`` -> (N, PROGRAM); anything else ends with one line saying what was expected."""
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{USAGE}\n\n{__doc__}")
        raise SystemExit(0)
    if len(argv) >= 3 and argv[0] == "-n" and argv[1].isdigit() and int(argv[1]) > 0:
        return int(argv[1]), argv[2:]
    given = " ".join(argv) or "nothing"
    print(f"tinyres.distributed.run: expected -n N (N >= 1) and what follows python (prog.py ARGS, or "
          f"-m module ARGS), got {given}", file=sys.stderr)
    raise SystemExit(2)  # a usage error, as the tinyres command's


def main(argv: list[str] | None = None) -> int:
    n, program = parse(sys.argv[1:] if argv is None else argv)
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit('tinyres.distributed.run: no mpiexec; install mpi4py and MPICH with '
                         'pip install "tinyres[distributed]"')
    process = subprocess.Popen([mpiexec, "-n", str(n), sys.executable, *program],
                               env={**os.environ, "TINYRES_RUN": "1"}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    relay = Relay()
    pumps = [threading.Thread(target=relay.pump, args=(source, out.buffer), daemon=True)
             for source, out in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))]
    for pump in pumps:
        pump.start()

    def forward(signum: int, frame: object) -> None:
        process.send_signal(signum)  # hydra passes it to every rank (a second SIGINT kills them)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = process.wait()
        for pump in pumps:
            pump.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    status = status if status >= 0 else 128 - status  # mpiexec itself killed by a signal
    line = relay.last_line(status)
    if line is not None:
        sys.stdout.flush()
        start = "" if relay.ends_line.get(sys.stderr.buffer, True) else "\n"  # after a progress bar
        print(start + line, file=sys.stderr, flush=True)
        if relay.killed is not None:
            return 128 + (relay.signum or signal.SIGKILL)
    return status


if __name__ == "__main__":
    sys.exit(main())
