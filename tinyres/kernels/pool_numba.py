"""Max pooling as compiled Numba loops, the (n, c) planes split between threads.

Same signatures and results as ``pool_reference`` (read that first). Instead of
padding a copy of the input, each tap checks whether it falls inside the image
(outside counts as -inf). Planes are independent, so the backward's scatter-adds
into one plane never race with another thread. Average pooling has no kernel here:
one measured no faster than the reference's k*k vectorised slice sums
(benchmarks/README.md), so every tier uses the reference for it.
``tinyres.ops.pool`` validates every size before these run, and the public functions
check their arrays again (``tinyres.kernels.sizes``), so all indices are in bounds.

>>> import numpy as np
>>> from tinyres.kernels import pool_reference
>>> x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
>>> args = ((3, 2), (2, 1), (1, 1), (1, 2))
>>> ours, ref = max_pool2d_forward(x, *args), pool_reference.max_pool2d_forward(x, *args)
>>> np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tinyres.kernels.sizes import Pair, expect, expect_indices, expect_positive, output_size
from tinyres.kernels.threads import parallel_for


@njit(nogil=True, cache=True)
def _max_forward(start, stop, x, kh, kw, sh, sw, ph, pw, dh, dw, out, index):  # pragma: no cover
    """The planes p = b*C + ch in [start, stop)."""
    _, c, h, w = x.shape
    ho, wo = out.shape[2], out.shape[3]
    for p in range(start, stop):
        b, ch = p // c, p % c
        for oh in range(ho):
            for ow in range(wo):
                best = -np.inf
                best_at = -1
                for i in range(kh):
                    r = oh * sh + i * dh - ph
                    if r < 0 or r >= h:
                        continue
                    for j in range(kw):
                        col = ow * sw + j * dw - pw
                        if col < 0 or col >= w:
                            continue
                        v = x[b, ch, r, col]
                        # strictly: a tie stays with the first tap; a NaN always wins (v != v)
                        if v > best or v != v:
                            best = v
                            best_at = r * w + col
                out[b, ch, oh, ow] = best
                index[b, ch, oh, ow] = best_at


@njit(nogil=True, cache=True)
def _max_backward(start, stop, grad, index, dx):  # pragma: no cover - compiled
    """The planes p = b*C + ch in [start, stop)."""
    _, c, ho, wo = grad.shape
    w = dx.shape[3]
    for p in range(start, stop):
        b, ch = p // c, p % c
        for oh in range(ho):
            for ow in range(wo):
                k = index[b, ch, oh, ow]
                if k >= 0:
                    dx[b, ch, k // w, k % w] += grad[b, ch, oh, ow]


def max_pool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[np.ndarray, np.ndarray]:
    """The window maxima and the flat index (into H*W) of each winner."""
    expect("x", x, ndim=4, floating=True)
    expect_positive("kernel, stride, dilation", (*kernel, *stride, *dilation))
    expect_positive("padding", padding, minimum=0)
    sizes = (output_size(*a) for a in zip(x.shape[2:], kernel, stride, padding, dilation))
    shape = (*x.shape[:2], *sizes)
    out = np.empty(shape, dtype=x.dtype)
    index = np.empty(shape, dtype=np.int64)
    parallel_for(_max_forward, shape[0] * shape[1], np.ascontiguousarray(x), *kernel, *stride, *padding,
                 *dilation, out, index)
    return out, index


def max_pool2d_backward(grad: np.ndarray, index: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Add each output's gradient to the input element that won its window."""
    expect("grad", grad, ndim=4, floating=True)
    expect("index", index, shape=grad.shape, dtype=np.int64)
    if len(x_shape) != 4 or tuple(x_shape[:2]) != grad.shape[:2]:
        raise ValueError(f"kernel argument x_shape: expected (N, C, H, W) with N, C = {grad.shape[:2]}, "
                         f"got {tuple(x_shape)}")
    expect_indices("index", index, -1, x_shape[2] * x_shape[3])  # -1: a window of padding only
    dx = np.zeros(x_shape, dtype=grad.dtype)
    parallel_for(_max_backward, grad.shape[0] * grad.shape[1], np.ascontiguousarray(grad), index, dx)
    return dx
