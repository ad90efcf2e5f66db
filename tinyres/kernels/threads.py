"""The kernels' threads: one pool tinyres owns, safe with Python threads and with ``fork``.

The compiled kernels are plain one-thread Numba loops (``nogil=True``) over a range of
their outer loop, ``kernel(start, stop, *args)``. ``parallel_for(kernel, n, *args)``
splits ``range(n)`` into one run per thread, runs the last run in the calling thread
and the others in the pool, and waits for all. Numba releases the GIL inside a
``nogil`` kernel, so the runs execute at once on different cores. ``batched_matmul``
(Winograd's products, NumPy releases the GIL too) uses the same pool.

Why not Numba's own ``parallel=True``/``prange``: that runs on a threading layer
chosen by Numba, and none available here is safe for both things users do.
GNU OpenMP (the default without TBB) is not fork-safe: a child forked after a
parallel kernel dies on its first one ("fork() called from a process already using
GNU OpenMP"), and a fork-based ``multiprocessing.Pool`` waits forever for its dead
workers. Numba's ``workqueue`` layer is fork-safe but aborts the process when two
Python threads run kernels at once. TBB hung in 7 of 10 forked children. A
``ThreadPoolExecutor`` is both: any number of Python threads may submit to it, and
a forked child drops the parent's pool (``os.register_at_fork``; its threads do not
exist in the child) and makes a fresh one on first use. It also works under
``NUMBA_DISABLE_JIT=1``, and a kernel compiled without ``parallel=True`` compiles
about twice as fast.

Measured (``benchmarks/README.md``, "Kernel threads"; 2 cores shared with other jobs,
load 6-9, so only large differences count): the first conv2d + batch_norm forward and
backward in a fresh Numba cache took 16.3 s of process CPU with ``parallel=True`` and
8.0 s now (both dtypes; float32 alone 9.0 -> 4.8 s). Batch norm's training forward and
backward on a (64, 16, 32, 32) convolution output: 21 -> 7 ms; max pooling 45 -> 38 ms;
im2col and col2im 8.0 -> 6.4 and 5.8 ms. A ResNet-20 training step (batch 64, im2col,
load 4) was about 11% slower (2.2 s -> 2.45 s) with two threads and as fast as before with
one: on a machine with no idle core, the pool's hand-offs cost more than its second thread
gains (the README has the profile; a quiet machine is still to be measured).
A ``parallel_for`` that uses the pool costs about 0.1 ms (12 us on one thread).

**Threads.** ``get_num_threads()`` of them take part: Numba's ``NUMBA_NUM_THREADS``
(one per core unless that variable says otherwise), changed by ``set_num_threads``
(the command line's ``--threads``), as ``torch.set_num_threads``. One thread, or a
range of one item, calls the kernel directly: no pool. A kernel called from one of
the pool's own threads also runs directly, so nested use can never wait for itself.

**Reductions** (batch norm's sums over rows) never depend on this split: the
kernels sum fixed chunks of rows into a row of partial sums each, and the caller
adds those in a fixed order, so the result is the same for every thread count.

>>> import numpy as np
>>> from numba import njit
>>> @njit(nogil=True)
... def square(start, stop, x, out):
...     for i in range(start, stop):
...         out[i] = x[i] * x[i]
>>> x, out = np.arange(5.0), np.empty(5)
>>> parallel_for(square, 5, x, out)
>>> out.tolist()
[0.0, 1.0, 4.0, 9.0, 16.0]
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numba
import numpy as np

_lock = threading.Lock()  # guards the module values below, which every thread reads
_threads = numba.config.NUMBA_NUM_THREADS
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0
_blas: Any = None  # threadpoolctl's ThreadpoolController, made on first use
_blas_holders = 0  # how many calls are inside single_threaded_blas() right now
_blas_restore: Any = None  # [(library, the user's thread count)] while any call is inside
_in_pool = threading.local()  # .worker is True in the pool's own threads, and in a caller running its run


def get_num_threads() -> int:
    """How many threads a kernel call uses (the calling thread included)."""
    return _threads


def set_num_threads(threads: int) -> None:
    """Use ``threads`` threads per kernel call from now on (1 = the calling thread only)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {threads!r}")
    global _threads
    with _lock:
        _threads = threads


def _mark_worker() -> None:
    _in_pool.worker = True
    # Ctrl-C and SIGTERM are for the main thread, whose Python handler ends the run; a pool
    # thread that took one from the kernel would only delay that until its kernel returned.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _workers(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """The pool, with ``threads - 1`` workers (the caller is the last one); made on first use."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < threads - 1:
            # The old pool's threads finish what they run and exit; calls holding it still wait on it.
            old, _pool_size = _pool, threads - 1
            _pool = concurrent.futures.ThreadPoolExecutor(_pool_size, "tinyres-kernel", _mark_worker)
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _forget_after_fork() -> None:
    """In a forked child: the parent's pool threads do not exist here; a new pool comes on first use."""
    global _lock, _pool, _pool_size, _blas, _blas_holders, _blas_restore
    _lock = threading.Lock()  # another parent thread may have held it at the fork
    _pool, _pool_size, _blas = None, 0, None
    # A parent thread inside single_threaded_blas() at the fork does not exist here to leave it.
    for lib, threads in _blas_restore or ():
        _set_blas_threads(lib, threads)
    _blas_holders, _blas_restore = 0, None


os.register_at_fork(after_in_child=_forget_after_fork)


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` as ``parts`` consecutive runs ``(start, stop)`` of sizes differing by at most one."""
    return [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]


def run_split(task: Callable[[int, int], object], n: int) -> None:
    """Call ``task(start, stop)`` for each thread's run of ``range(n)``, at once; return when all did.

    An exception in any run is raised here, after every run has finished.
    """
    threads = min(_threads, n)
    if threads <= 1 or getattr(_in_pool, "worker", False):
        if n > 0:
            task(0, n)
        return
    runs = split(n, threads)
    pool = _workers(threads)
    futures = [pool.submit(task, start, stop) for start, stop in runs[:-1]]
    # While the caller runs its own part it is one of the split's threads: a kernel that the
    # task calls runs directly, as in a worker, instead of queueing behind the busy workers.
    _in_pool.worker = True
    try:
        task(*runs[-1])
    finally:
        _in_pool.worker = False
        concurrent.futures.wait(futures)
    for future in futures:
        future.result()


def parallel_for(kernel: Callable[..., None], n: int, *args: object) -> None:
    """``kernel(start, stop, *args)`` over ``range(n)``, split between the threads."""
    run_split(lambda start, stop: kernel(start, stop, *args), n)


def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS; imported and made on first use, never at import.

    Importing threadpoolctl sets ``KMP_DUPLICATE_LIB_OK`` in ``os.environ`` (a workaround
    for Intel's OpenMP that concerns neither NumPy's OpenBLAS nor tinyres); the variable is
    put back as it was, so that tinyres changes nothing in the user's environment.
    """
    global _blas
    with _lock:
        if _blas is None:
            before = os.environ.get("KMP_DUPLICATE_LIB_OK")
            from threadpoolctl import ThreadpoolController

            if before is None:
                os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
            _blas = ThreadpoolController()  # inspects every loaded library: ~3 ms, once
        return _blas


def _blas_libraries() -> list[Any]:
    return [lib for lib in _blas_controller().lib_controllers if lib.user_api == "blas"]


def _set_blas_threads(lib: Any, threads: int) -> None:
    """Set a BLAS library's process-wide thread count from whichever thread calls.

    threadpoolctl 3.7 and later let only the thread that last limited OpenBLAS change
    it again (its ``set_num_threads`` silently does nothing in another thread), but
    the count below hands the restore to whichever thread leaves last; so the setting
    itself is called (``_real_set_num_threads``, where the guard exists).
    """
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(threads)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread while any tinyres kernel is inside this block; the user's setting after.

    tinyres's products run on its own pool's threads, one BLAS thread each, so no BLAS
    worker thread is woken. A woken OpenBLAS worker spins for a while after each product
    (``OPENBLAS_THREAD_TIMEOUT``, read once when NumPy loads), and on 2 cores those spins
    took the cores from the pool: a ResNet-20 step was 1.5-2.2x slower than with the
    variable set (benchmarks/README.md, "Nothing to set"). The limit is process-wide
    while it holds (BLAS has one setting): a product elsewhere in the process meanwhile also
    runs on one thread (slower, never wrong). A count, not a stack of saved values, so that
    two Python threads entering and leaving in any order restore the user's setting exactly
    once, when the last one leaves.
    """
    global _blas_holders, _blas_restore
    libraries = _blas_libraries()
    with _lock:
        if _blas_holders == 0:
            _blas_restore = [(lib, lib.num_threads) for lib in libraries]
            for lib in libraries:
                _set_blas_threads(lib, 1)
        _blas_holders += 1
    try:
        yield
    finally:
        with _lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                for lib, threads in _blas_restore or ():
                    _set_blas_threads(lib, threads)
                _blas_restore = None


def run_split_with_blas(task: Callable[[int, int], object], n: int) -> None:
    """``run_split(task, n)`` with BLAS on one thread meanwhile: each run's products stay on its thread."""
    with single_threaded_blas():
        run_split(task, n)


def batched_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[k] = a[k] @ b[k] for every k, each product on one BLAS thread, the k split between threads.

    OpenBLAS splits one product over its result's rows and columns; for many small
    products (Winograd's (m+2)^2 products of C x C_out results) its threads
    synchronise far more often than they compute (2.2-10.6 s with two OpenBLAS
    threads against 20-60 ms on one, on the busy 2-core machine). NumPy releases the
    GIL inside a product, so the split runs at once.
    """
    run_split_with_blas(lambda start, stop: np.matmul(a[start:stop], b[start:stop], out=out[start:stop]),
                        len(a))
    return out


# Rows of a product's result per block: at least 128 (smaller blocks cost up to 15% more CPU
# per flop in OpenBLAS, which packs the right operand again for each block) and at most 4 blocks.
# The blocks depend on the shapes only, never on the thread count, so the numbers do not either
# (OpenBLAS's own threads give different last bits on one and two threads).
MATMUL_BLOCK_ROWS = 128


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (NumPy's rules) on tinyres's threads: blocks of the result's rows split between
    them, BLAS on one thread in each, so no BLAS worker thread wakes up to spin against the pool.

    Measured (``benchmarks/bench_linear.py``, README "Nothing to set"; busy machine): a Linear
    layer's forward and backward, batch 256, 1024 -> 1024, took 3-4.5x less CPU this way than
    on OpenBLAS's two threads, whose spinning after each product is most of their time, and
    1.1-1.2x less at batch 1024, 2048 -> 2048. A product of at most 128 rows (a ResNet's
    classifier) is one block, run in the calling thread (+0.03 ms a step for the BLAS setting).
    """
    if a.ndim < 2 or a.shape[-2] <= MATMUL_BLOCK_ROWS:  # one block: no result to split
        with single_threaded_blas():
            return np.matmul(a, b)
    rows = a.shape[-2]
    no_rows = np.matmul(a[..., :0, :], b)  # checks the shapes; the result with none of its rows
    axis = no_rows.ndim - (2 if b.ndim > 1 else 1)  # the result's row axis
    out = np.empty(no_rows.shape[:axis] + (rows,) + no_rows.shape[axis + 1:], no_rows.dtype)
    size = max(MATMUL_BLOCK_ROWS, -(-rows // 4))

    def task(start: int, stop: int) -> None:
        for k in range(start, stop):
            part = slice(k * size, (k + 1) * size)
            np.matmul(a[..., part, :], b, out=out[(slice(None),) * axis + (part,)])

    run_split_with_blas(task, -(-rows // size))
    return out


def load_numba_blas() -> None:
    """Load what Numba loads before its first compiled kernel runs, now, while memory is free.

    Numba imports SciPy's BLAS (``scipy.linalg.cython_blas``) when it loads its first
    kernel, and that BLAS starts its own threads. Under an address-space limit
    (``ulimit -v``) that first kernel can come after a training run has filled most of
    the limit, and SciPy's OpenBLAS then waits forever for threads it cannot create
    (measured: a ResNet-20 batch of 5,000 CIFAR images under start-up + 600 MB hung
    in that import). The command line calls this at start-up, so a run that is too
    big fails with one ``MemoryError`` line instead.
    """
    try:
        from numba.np.linalg import ensure_blas

        ensure_blas()
    except ImportError:  # Numba without SciPy: it loads no BLAS of its own
        pass

