"""``tinyres.distributed``: ``torch.distributed``'s names, served by MPI through mpi4py.

A program is launched as N copies by the MPI implementation's launcher
(``mpiexec -n 2 python train.py``); each copy is one *rank*. MPI does the rendezvous
(no address or port to set) and the communication. PyTorch's CPU back ends ``"gloo"`` and
``"mpi"`` both mean MPI here, so a program keeps its ``init_process_group`` line.

Every operation works in place on a tensor's array, as PyTorch's do:

- ``all_reduce(t, op)``: every rank ends with the SUM (AVG, MAX) of all ranks' ``t``.
  MPI runs it as a ring or a tree; a ring moves ``2 (N-1)/N x size`` bytes per rank.
- ``broadcast(t, src)``: every rank ends with rank ``src``'s ``t``.
- ``all_gather(list, t)``: ``list[r]`` becomes rank r's ``t`` on every rank.
- ``barrier()``: no rank goes on until all have arrived.

mpi4py is imported by ``init_process_group``, not by ``import tinyres``: importing
``mpi4py.MPI`` starts MPI, a side effect a library must not have at import. Without a
launcher the process is a world of one (rank 0 of 1), so the same program runs alone.

A rank that raises, or is stopped by SIGTERM or Ctrl-C, after ``init_process_group`` prints
one line (``tinyres.distributed: rank 1 of 2 failed: ...``) and ends every rank within a
second (once its current call into compiled code returns), where the others would wait for it
for ever (see "a failing rank" below); for a rank killed outright, launch with
``python -m tinyres.distributed.run -n N program.py``.

>>> import tinyres.distributed as dist
>>> dist.is_available(), dist.is_initialized()  # doctest: +SKIP
(True, False)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import sys
import threading
import traceback
from typing import Any

import numpy as np

from tinyres.engine import Tensor


class ReduceOp:
    """The reductions ``all_reduce`` takes (PyTorch's names)."""

    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


_BACKENDS = ("gloo", "mpi")  # PyTorch's CPU back ends; both are MPI here

# The process group of this process: one per process, as in PyTorch (a rank *is* a process).
_world: Any = None  # mpi4py's COMM_WORLD after init_process_group, else None


def is_available() -> bool:
    """True when mpi4py (and so an MPI) is installed: ``pip install "tinyres[distributed]"``."""
    return importlib.util.find_spec("mpi4py") is not None


def is_initialized() -> bool:
    return _world is not None


def is_mpi_available() -> bool:
    return is_available()


def is_gloo_available() -> bool:
    return is_available()  # "gloo" is served by MPI too


def is_nccl_available() -> bool:
    return False


def init_process_group(backend: str | None = None, init_method: str | None = None, timeout: Any = None,
                       world_size: int = -1, rank: int = -1, **kwargs: Any) -> None:
    """Join the ranks started by ``mpiexec``.

    ``backend`` "gloo" or "mpi" (or None); "nccl" is refused (it needs NVIDIA GPUs).
    ``init_method``, ``timeout`` and ``store`` are accepted and unused: MPI's launcher has
    already connected the ranks. A ``world_size`` or ``rank`` that is given must be the
    one the launcher chose, or the program would shard its data wrongly.
    """
    global _world
    name = "gloo" if backend is None else str(backend).lower()
    if name == "nccl":
        raise RuntimeError("init_process_group: backend 'nccl' needs NVIDIA GPUs and tinyres runs on the "
                           "CPU; use 'gloo' or 'mpi' (both are served by MPI here)")
    if name not in _BACKENDS:
        raise ValueError(f"init_process_group: backend must be one of {_BACKENDS} (or 'nccl', refused), "
                         f"got {backend!r}")
    if _world is not None:
        raise RuntimeError("init_process_group: trying to initialize the default process group twice")
    if not is_available():
        raise RuntimeError('init_process_group: needs mpi4py and an MPI; install them with '
                           'pip install "tinyres[distributed]" and launch with mpiexec -n N')
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    for what, given, actual in (("world_size", world_size, comm.Get_size()), ("rank", rank, comm.Get_rank())):
        if given is not None and int(given) >= 0 and int(given) != actual:
            raise ValueError(f"init_process_group: {what}={given} was given, but mpiexec started this "
                             f"process as {what} {actual}; launch with the matching mpiexec -n, or drop "
                             f"the argument")
    _world = comm
    _handle_failures()


def destroy_process_group(group: Any = None) -> None:
    """Leave the process group (MPI itself is finalised by mpi4py at exit)."""
    global _world
    _restore()
    _world = None


def _comm() -> Any:
    if _world is None:
        raise RuntimeError("Default process group has not been initialized, "
                           "please make sure to call init_process_group.")
    return _world


def get_rank(group: Any = None) -> int:
    return int(_comm().Get_rank())


def get_world_size(group: Any = None) -> int:
    return int(_comm().Get_size())


def get_backend(group: Any = None) -> str:
    _comm()
    return "mpi"


class Work:
    """What ``async_op=True`` returns: ``wait()`` blocks until the operation is done."""

    def __init__(self, request: Any, finish: Any = None):
        self._request, self._finish = request, finish

    def is_completed(self) -> bool:
        return bool(self._request.Test())

    def wait(self, timeout: Any = None) -> bool:
        self._request.Wait()
        if self._finish is not None:
            self._finish()
            self._finish = None
        return True


def _array(tensor: Any, what: str) -> np.ndarray:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a tinyres Tensor, got {type(tensor).__name__}")
    return tensor._data


def _mpi_op(op: Any) -> Any:
    from mpi4py import MPI

    ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.MAX: MPI.MAX,
           ReduceOp.MIN: MPI.MIN, ReduceOp.PRODUCT: MPI.PROD}
    if op not in ops:
        raise ValueError(f"all_reduce: op must be a ReduceOp (SUM, AVG, MAX, MIN, PRODUCT), got {op!r}")
    return ops[op]


def all_reduce_array(array: np.ndarray, op: Any = ReduceOp.SUM, async_op: bool = False) -> Work | None:
    """``all_reduce`` on a NumPy array, in place (what DDP and SyncBatchNorm call)."""
    comm = _comm()
    if op == ReduceOp.AVG and array.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point tensor, got {array.dtype}")
    buffer = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    n = comm.Get_size()

    def finish() -> None:
        if op == ReduceOp.AVG:
            buffer[...] /= n
        if buffer is not array:
            array[...] = buffer

    from mpi4py import MPI

    if async_op:
        return Work(comm.Iallreduce(MPI.IN_PLACE, buffer, op=_mpi_op(op)), finish)
    comm.Allreduce(MPI.IN_PLACE, buffer, op=_mpi_op(op))
    finish()
    return None


def all_reduce(tensor: Tensor, op: Any = ReduceOp.SUM, group: Any = None,
               async_op: bool = False) -> Work | None:
    """Replace ``tensor`` on every rank by the reduction over all ranks (in place)."""
    return all_reduce_array(_array(tensor, "all_reduce"), op, async_op)


def broadcast(tensor: Tensor, src: int = 0, group: Any = None, async_op: bool = False) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into every rank's ``tensor`` (in place)."""
    comm, array = _comm(), _array(tensor, "broadcast")
    if not 0 <= int(src) < comm.Get_size():
        raise ValueError(f"broadcast: src must be a rank in [0, {comm.Get_size()}), got {src}")
    buffer = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    comm.Bcast(buffer, root=int(src))
    if buffer is not array:
        array[...] = buffer
    return Work(_Done()) if async_op else None


def all_gather(tensor_list: list[Tensor], tensor: Tensor, group: Any = None,
               async_op: bool = False) -> Work | None:
    """``tensor_list[r]`` becomes rank r's ``tensor`` on every rank (same shape everywhere)."""
    comm, array = _comm(), _array(tensor, "all_gather")
    n = comm.Get_size()
    if len(tensor_list) != n:
        raise ValueError(f"all_gather: tensor_list must hold world_size={n} tensors, got {len(tensor_list)}")
    for t in tensor_list:
        if _array(t, "all_gather").shape != array.shape:
            raise ValueError(f"all_gather: every tensor must have the input's shape {tuple(array.shape)}, "
                             f"got {tuple(t.shape)}")
    gathered = np.empty((n, *array.shape), dtype=array.dtype)
    comm.Allgather(np.ascontiguousarray(array), gathered)
    for t, part in zip(tensor_list, gathered):
        t._data[...] = part
    return Work(_Done()) if async_op else None


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> Work | None:
    _comm().Barrier()
    return Work(_Done()) if async_op else None


class _Done:
    """A finished request, for the blocking operations' ``async_op=True``."""

    def Test(self) -> bool:
        return True

    def Wait(self) -> None:
        return None


# ---- for programs launched by mpiexec (tinyres train) -------------------------------------

_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")  # what MPICH's and Open MPI's mpiexec set


def launched_world_size() -> int:
    """How many ranks ``mpiexec`` started (1 without it), read before MPI starts."""
    for name in _LAUNCHER_SIZE:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


# ---- a failing rank ends the run: one line, a bounded time ---------------------------------
#
# MPI has no way to interrupt a rank that waits in an all-reduce for a rank that has gone: it
# waits for ever. What ends the run is the launcher: MPICH's hydra kills (SIGKILL, silently)
# every rank as soon as one leaves without MPI_Finalize, whatever its exit status. So a rank that
# fails prints its one line and leaves with ``os._exit``: not through the interpreter's exit,
# whose MPI_Finalize (mpi4py's at-exit hook) would wait for the others, measured at > 60 s, and
# not through MPI_Abort, to which MPICH adds a line of its own. A rank killed by a signal it
# cannot catch (SIGKILL, SIGSEGV) says nothing; hydra then prints a banner of 11 lines, which
# ``python -m tinyres.distributed.run`` reduces to one line naming the rank.
# Not covered: ``sys.exit(...)`` on one rank. Python calls no hook with its status, and the
# interpreter's exit waits in MPI_Finalize for ranks that wait for this one (tinyres train
# catches its own SystemExit in ``or_abort``).

RUN_MARK = "tinyres.distributed.run:"  # how a rank talks to the launcher, on its stdout
# The failure lines below and ``tinyres COMMAND: interrupted by SIGINT on rank R of N``; searched,
# not matched, as another rank's unfinished line (a progress bar) may come first.
_FAILURE = re.compile(r"tinyres[\w.]*( \w+)?: (.*\brank \d+ of \d+\b|interrupted by SIG)")


def is_failure_line(line: str) -> bool:
    """True for the line a failing rank prints (the launcher shows the first one only)."""
    return _FAILURE.search(line) is not None


def where() -> str:
    """``rank R of N`` (what every failure line names)."""
    comm = _comm()
    return f"rank {comm.Get_rank()} of {comm.Get_size()}"


def abort(message: str, code: int = 1) -> None:
    """Print ``message`` (one line, naming this rank) and end every rank within a second.

    This process leaves at once with ``code`` (see above for why ``os._exit``); the launcher
    then kills the ranks that may be waiting for it in an all-reduce.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os.write(2, (" ".join(message.split()) + "\n").encode())
    os._exit(code)


def announce(key: str, value: str) -> None:
    """Tell ``python -m tinyres.distributed.run`` ``key value`` (nothing without it).

    ``tinyres train`` announces its checkpoint, so the launcher's line for a rank killed
    without a word can still say where to resume from.
    """
    if os.environ.get("TINYRES_RUN") == "1":
        os.write(1, f"{RUN_MARK} {key} {value}\n".encode())


class RankInterrupted(KeyboardInterrupt):
    """SIGTERM, in a program that left it to Python's default (which kills without a word)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_sigterm(signum: int, frame: Any) -> None:
    raise RankInterrupted(signum)  # unwinds as Ctrl-C does (finally blocks run), then _excepthook


def _excepthook(kind: type[BaseException], err: BaseException, tb: Any) -> None:
    """An exception no one caught on a rank: one line naming the rank, then end every rank."""
    if isinstance(err, KeyboardInterrupt):
        signum = getattr(err, "signum", signal.SIGINT)
        abort(f"tinyres.distributed: {where()} interrupted by {signal.Signals(signum).name}", 128 + signum)
    text = " ".join(str(err).split())
    text = f"{kind.__name__}: {text}" if text else kind.__name__
    if len(text) > 300:  # a message of 300 missing keys is not one clear line
        text = text[:297] + "..."
    frames = traceback.extract_tb(tb)
    at = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""
    abort(f"tinyres.distributed: {where()} failed: {text}{at}", 1)


def _handle_failures() -> None:
    """What ``init_process_group`` sets up so a failing rank ends the run (see above)."""
    global _previous
    _previous = sys.excepthook, signal.getsignal(signal.SIGTERM)
    sys.excepthook = _excepthook
    if _previous[1] is signal.SIG_DFL and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)  # a handler the program set is left alone
    if os.environ.get("TINYRES_RUN") == "1":
        comm = _comm()
        announce("rank", f"{comm.Get_rank()} {comm.Get_size()} {os.getpid()} {socket.gethostname()}")


def _restore() -> None:
    global _previous
    if _previous is None:
        return
    sys.excepthook = _previous[0]
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, _previous[1])
    _previous = None


_previous: Any = None  # sys.excepthook and SIGTERM's handler before init_process_group
