"""The kernels' caching allocator (tinyres/kernels/buffers.py): reuse without ever sharing live memory."""

from __future__ import annotations

import gc
import threading

import numpy as np

from tinyres.kernels import buffers

SHAPE = (256, 1024)  # 1 MiB of float32: above MIN_BYTES


def block_of(a: np.ndarray) -> np.ndarray:
    while not isinstance(a.base, memoryview):
        a = a.base
    return a.base.obj


def test_a_freed_array_s_memory_serves_the_next_array_of_its_size():
    buffers.release()
    a = buffers.empty(SHAPE, np.float32)
    block = block_of(a)
    del a
    b = buffers.empty(SHAPE, np.float32)
    assert block_of(b) is block
    assert b.shape == SHAPE and b.dtype == np.float32 and b.flags.c_contiguous and b.flags.writeable


def test_memory_is_not_handed_out_while_a_view_of_it_lives():
    buffers.release()
    a = buffers.empty(SHAPE, np.float32)
    a[...] = 7.0
    view = a.T[::2]  # a view made from the array: the array must outlive it
    block = block_of(a)
    del a
    gc.collect()
    b = buffers.empty(SHAPE, np.float32)
    b[...] = -1.0
    assert block_of(b) is not block
    assert np.all(view == 7.0)
    del view, b
    gc.collect()
    assert buffers.empty(SHAPE, np.float32) is not None


def test_small_arrays_come_from_numpy():
    a = buffers.empty((4, 4), np.float64)
    assert a.flags.owndata


def test_the_free_list_is_bounded_by_the_most_memory_in_use_at_once_and_release_empties_it():
    buffers.release()
    held = [buffers.empty(SHAPE, np.float32) for _ in range(3)]
    del held
    gc.collect()
    assert 0 < buffers.kept_bytes() <= buffers._high_water
    # A run whose sizes change: the cache frees old sizes' blocks for the new ones, so kept and
    # handed-out memory together stay at or below the most ever handed out at once.
    for rows in range(300, 340):
        held = [buffers.empty((rows, 1024), np.float32), buffers.empty((rows, 512), np.float32)]
        assert buffers.kept_bytes() + buffers._in_use <= buffers._high_water
        del held
    assert buffers.kept_bytes() <= buffers._high_water
    now = buffers.kept_bytes()
    assert now > 0 and buffers.release() == now
    assert buffers.kept_bytes() == 0


def test_threads_allocating_and_freeing_at_once_never_share_a_block():
    buffers.release()
    errors = []

    def work(value: float) -> None:
        for _ in range(200):
            a = buffers.empty(SHAPE, np.float32)
            a[...] = value
            if not np.all(a == value):
                errors.append(value)

    workers = [threading.Thread(target=work, args=(float(k),)) for k in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert errors == []
