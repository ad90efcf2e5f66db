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
- **Idle OpenBLAS threads sleep** (``OPENBLAS_THREAD_TIMEOUT=4``, up to 2.8x on a
  CIFAR layer): OpenBLAS reads it once, when NumPy loads, before any library code can
  run; no call can set it afterwards (threadpoolctl sets thread counts, not this), so
  it belongs in the shell: ``OPENBLAS_THREAD_TIMEOUT=4 python train.py``.
  ``tune()`` reports whether it is in effect.

A value the user set in the environment always wins. The kernels' own threads need no
setting: they are tinyres's pool (``tinyres.kernels.threads``), whose idle threads wait
on a queue without spinning, and tinyres starts no OpenMP threads.

>>> import tinyres
>>> sorted(tinyres.tune())
['malloc', 'openblas_thread_timeout']
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


def tune() -> dict[str, bool]:
    """Apply the settings above for this process; say which are in effect.

    Call it once, early (before the first training step).
    """
    return {
        "malloc": keep_freed_memory(),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT") is not None,
    }
