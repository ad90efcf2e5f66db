"""Speed settings for a training process: applied by ``tinyres.tune()``, never by ``import tinyres``.

``import tinyres`` changes nothing outside tinyres. The command line and
``tinyres.training.fit`` call ``tune()``; a Python user who wants the same calls it once,
at the top of a script. What each setting buys (2 cores, ``benchmarks/README.md``):

- **Keep freed memory** (glibc ``mallopt``, about 15% off a ResNet-20 training step):
  a step allocates and frees hundreds of MB of arrays a few MB each. By default glibc
  unmaps blocks above its mmap threshold and trims free memory at the top of the heap,
  so the next step faults in fresh zeroed pages, one per 4 KiB. ``M_MMAP_THRESHOLD`` at
  32 MiB (glibc's own adaptive ceiling on 64-bit) and ``M_TRIM_THRESHOLD`` at 1 GiB keep
  the pages mapped for reuse (PyTorch's caching allocator does the same job). The
  process keeps its high-water mark; the peak is unchanged. No-op without glibc.
- **Idle OpenMP threads sleep** (``OMP_WAIT_POLICY=PASSIVE``): Numba's OpenMP threads
  and OpenBLAS's threads take turns in every convolution, and threads left spinning
  by one pool hold the cores the other needs. Read when Numba starts its OpenMP pool
  (its first parallel kernel), so ``tune()`` sets it only if no parallel kernel ran yet.
- **Idle OpenBLAS threads sleep** (``OPENBLAS_THREAD_TIMEOUT=4``, up to 2.8x on a
  CIFAR layer): OpenBLAS reads it once, when NumPy loads, before any library code can
  run; no call can set it afterwards (threadpoolctl sets thread counts, not this), so
  it belongs in the shell: ``OPENBLAS_THREAD_TIMEOUT=4 python train.py``.
  ``tune()`` reports whether it is in effect.

A value the user set in the environment always wins.

>>> import tinyres
>>> sorted(tinyres.tune())
['malloc', 'omp_wait_policy', 'openblas_thread_timeout']
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MALLOC_SETTINGS = {
    M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 32 * 1024 * 1024),
    M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 1024 * 1024 * 1024),
}
THREAD_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def keep_freed_memory() -> bool:
    """Apply the malloc settings above that the environment does not set; True if any took effect."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    applied = False
    for parameter, (variable, value) in MALLOC_SETTINGS.items():
        if variable not in os.environ:
            applied |= libc.mallopt(parameter, value) == 1  # mallopt returns 1 on success
    return applied


def passive_openmp() -> bool:
    """Let Numba's OpenMP threads sleep when idle, if its pool has not started; True if in effect."""
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE"
    import numba.np.ufunc.parallel as numba_parallel

    if numba_parallel._is_initialized:  # the pool read its settings already
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def tune() -> dict[str, bool]:
    """Apply the settings above for this process; say which are in effect.

    Call it once, early (before the first training step). The OpenMP setting is an
    environment variable, so processes started afterwards inherit it.
    """
    return {
        "malloc": keep_freed_memory(),
        "omp_wait_policy": passive_openmp(),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT") is not None,
    }
