"""The kernels' large arrays, served from memory the previous step freed: a small caching allocator.

A training step allocates and frees the same large arrays every step (a convolution's
output and input gradient, batch norm's and ReLU's outputs, layout copies: a few MB
each). glibc hands most of them back to the kernel when they are freed, so the next
step touches fresh pages and takes a page fault every 4 KiB: about 29,000 faults and
80-150 ms of system time per ResNet-20 step at batch 64 (benchmarks/README.md,
"Nothing to set"). PyTorch's caching allocator keeps such blocks for reuse; this does
the same for tinyres's kernels, without changing how the process allocates anything
else (``mallopt`` would).

``empty(shape, dtype)`` returns an array whose memory is a kept block of exactly that
many bytes when one is free, else a new one. When the array and every view of it are
gone, its block goes back on the free list (``weakref.finalize`` on the array that
anchors the views: NumPy points a view's ``base`` at that array, never past it to the
block). Small arrays (under ``MIN_BYTES``) come from ``np.empty``: glibc reuses those
without fresh pages. The free list never holds more than the most memory the kernels'
arrays have held at once (a run whose sizes change does not grow it without bound);
``release()`` empties it.

>>> a = empty((512, 512), np.float32)
>>> address = a.__array_interface__["data"][0]
>>> del a
>>> empty((512, 512), np.float32).__array_interface__["data"][0] == address  # the same memory again
True
>>> release() >= 0
True
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import numpy as np

MIN_BYTES = 1 << 18  # 256 KiB
_lock = threading.Lock()  # guards the values below; a block returns from whichever thread drops it
_free: dict[int, list[np.ndarray]] = {}  # size in bytes -> kept blocks (uint8)
_kept = 0  # bytes in _free
_in_use = 0  # bytes handed out and not yet back
_high_water = 0  # the most bytes ever in use at once: kept + in use stays at or below it


def empty(shape: Any, dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)``, from a kept block when a free one has the same size."""
    global _kept, _in_use, _high_water
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    size = count * dtype.itemsize
    if size < MIN_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        blocks = _free.get(size)
        block = blocks.pop() if blocks else None
        if block is not None:
            _kept -= size
        _in_use += size
        _high_water = max(_high_water, _in_use)
        if block is None:
            _evict()
    if block is None:
        block = np.empty(size, np.uint8)
    # A fresh array object over the block, whose base is a memoryview (not an ndarray): every
    # view made from it keeps *it* alive, so the block returns only when the last view is gone.
    anchor = np.frombuffer(memoryview(block), dtype=dtype, count=count)
    weakref.finalize(anchor, _give_back, block)
    return anchor.reshape(shape)


def empty_like(a: np.ndarray) -> np.ndarray:
    """A C-ordered ``empty`` of ``a``'s shape and dtype."""
    return empty(a.shape, a.dtype)


def ascontiguousarray(a: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray(a)``: ``a`` itself if C-contiguous, else a copy in a kept block."""
    if a.flags.c_contiguous:
        return a
    out = empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def _give_back(block: np.ndarray) -> None:
    global _kept, _in_use
    with _lock:
        _in_use -= block.size
        _free.setdefault(block.size, []).append(block)
        _kept += block.size


def _evict() -> None:
    """Free kept blocks until kept + in use is at most the most ever in use (called under the lock).

    So the cache never holds more memory than the kernels' arrays once needed at the same
    time: with it, a run's peak memory is what it would be without it.
    """
    global _kept
    for size in list(_free):
        blocks = _free[size]
        while blocks and _kept + _in_use > _high_water:
            blocks.pop()
            _kept -= size
        if not blocks:
            del _free[size]


def release() -> int:
    """Free every kept block (the memory goes back to the system); return how many bytes."""
    global _kept
    with _lock:
        freed, _kept = _kept, 0
        _free.clear()
    return freed


def kept_bytes() -> int:
    """Bytes held on the free list now."""
    return _kept


def _forget_after_fork() -> None:
    """A forked child's copy of the lock may be held by a parent thread that does not exist here."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
