"""Keep freed array memory in the process (glibc's malloc; ``tinyres/__init__.py`` runs this).

A training step allocates and frees hundreds of MB of short-lived arrays a few MB
each (activations, gradients, batch-norm outputs). By default glibc's ``malloc``
hands large blocks back to the operating system when they are freed: blocks above
its mmap threshold are unmapped, and free memory at the top of the heap beyond the
trim threshold is released. The next step then asks for the same sizes again and
the kernel must map and zero fresh pages, one page fault per 4 KiB, on every step.
PyTorch avoids this with its own caching allocator; two ``mallopt`` settings do the
same job here:

- ``M_MMAP_THRESHOLD`` at 32 MiB (the ceiling glibc's own adaptive threshold uses on
  64-bit): blocks up to that size come from the heap, whose pages stay mapped;
- ``M_TRIM_THRESHOLD`` at 1 GiB: free heap memory is kept for reuse, not released.

The process keeps its high-water mark of memory instead of shrinking between steps;
the peak is unchanged. Measured on a ResNet-20 training step (batch 64, 2 cores):
about 15% faster (``benchmarks/README.md``). On other C libraries (macOS, musl) there
is no ``mallopt`` and nothing happens. A value set in the environment
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) wins.

>>> import os
>>> APPLIED or os.environ.get("MALLOC_TRIM_THRESHOLD_") is not None or not hasattr(_libc(), "mallopt")
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
SETTINGS = {
    M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 32 * 1024 * 1024),
    M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 1024 * 1024 * 1024),
}


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def keep_freed_memory() -> bool:
    """Apply the settings above that the environment does not set; True if any took effect."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    applied = False
    for parameter, (variable, value) in SETTINGS.items():
        if variable not in os.environ:
            applied |= libc.mallopt(parameter, value) == 1  # mallopt returns 1 on success
    return applied


APPLIED = keep_freed_memory()
