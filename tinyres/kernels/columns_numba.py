r"""The columns matrix of a channels-last convolution: compiled im2col / col2im and their memory.

For an NHWC input, row (n, oh, ow) of the columns matrix holds the receptive field of
output pixel (oh, ow) of sample n, in (i, j, c) order: kH*kW runs of C contiguous
numbers (``tinyres.kernels.im2col_numpy`` explains the idea in plain NumPy, read that first).

- ``im2col_nhwc`` builds it, ``im2col_nhwc_rows`` does the same for inputs with few
  channels by copying whole field rows, ``col2im_nhwc`` adds a gradient of it back
  onto the pixels; each checks its buffers (``tinyres.kernels.sizes``) and then runs
  the compiled loop of the same name with a leading underscore, whose reads and writes
  are guarded by bounds tests.
- ``columns`` picks the kernel and ``columns_buffer`` hands out the memory, one block
  reused per dtype and thread.

>>> x = np.arange(8.0).reshape(1, 2, 2, 2)          # one 2x2 image, 2 channels, NHWC
>>> cols = np.empty((4, 2))
>>> im2col_nhwc(x, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2, cols)  # a 1x1 kernel: each row is one pixel
>>> cols.tolist()
[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

from tinyres.kernels.sizes import Pair, expect, expect_positive, output_size
from tinyres.kernels.threads import parallel_for


@njit(nogil=True, cache=True)
def _im2col_nhwc(start, stop, x, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, cols):  # pragma: no cover
    """cols[(n, oh, ow), (i, j, c)] = x[n, oh*sH - pH + i*dH, ow*sW - pW + j*dW, c], or 0 outside.

    For the image rows ``row = n*Ho + oh`` in [start, stop) (of N*Ho).
    """
    _, H, W, C = x.shape
    for row in range(start, stop):
        n = row // Ho
        oh = row - n * Ho
        for ow in range(Wo):
            r = row * Wo + ow
            for i in range(kH):
                h = oh * sH - pH + i * dH
                for j in range(kW):
                    v = ow * sW - pW + j * dW
                    at = (i * kW + j) * C
                    if 0 <= h < H and 0 <= v < W:
                        for c in range(C):
                            cols[r, at + c] = x[n, h, v, c]
                    else:
                        for c in range(C):
                            cols[r, at + c] = 0.0


@njit(cache=True)
def _im2col_nhwc_rows(x, kH, kW, sH, sW, pH, pW, Ho, Wo, cols):  # pragma: no cover - compiled
    """``_im2col_nhwc`` without dilation, for inputs with few channels (an RGB stem).

    With C = 3 the runs of C numbers above are too short to copy fast. Without
    dilation, a field row that lies wholly inside the image is kW*C numbers in a row
    of x, copied as one run; only fields that overlap the border go pixel by pixel.
    x must be C-contiguous (``im2col_nhwc_rows`` checks it), to be viewed as rows of W*C numbers.
    One thread: compiled parallel it took 1.3 s longer to compile per dtype, to save
    0.7 ms per 224x224 image pair (and it was slower on CIFAR's 32x32 stem).
    """
    N, H, W, C = x.shape
    image_rows = x.reshape((N, H, W * C))
    run = kW * C
    for row in range(N * Ho):
        n = row // Ho
        oh = row - n * Ho
        for ow in range(Wo):
            r = row * Wo + ow
            v0 = ow * sW - pW
            whole = v0 >= 0 and v0 + kW <= W
            for i in range(kH):
                h = oh * sH - pH + i
                start = i * run
                if h < 0 or h >= H:
                    for t in range(run):
                        cols[r, start + t] = 0.0
                elif whole:
                    first = v0 * C
                    for t in range(run):
                        cols[r, start + t] = image_rows[n, h, first + t]
                else:
                    for j in range(kW):
                        v = v0 + j
                        at = start + j * C
                        if 0 <= v < W:
                            for c in range(C):
                                cols[r, at + c] = x[n, h, v, c]
                        else:
                            for c in range(C):
                                cols[r, at + c] = 0.0


@njit(nogil=True, cache=True)
def _col2im_nhwc(start, stop, dcols, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, dx):  # pragma: no cover
    """dx[n, h, v, c] = sum of dcols[(n, oh, ow), (i, j, c)] over the fields that read (h, v).

    The mirror image of ``_im2col_nhwc``: walk the rows of dcols and add each run of C
    numbers onto the pixel it was copied from. Overlapping fields add onto the same
    pixel, so threads split the batch: the samples n in [start, stop) belong to one thread.
    """
    _, H, W, C = dx.shape
    for n in range(start, stop):
        dx[n] = 0.0
        for oh in range(Ho):
            for ow in range(Wo):
                r = (n * Ho + oh) * Wo + ow
                for i in range(kH):
                    h = oh * sH - pH + i * dH
                    if h < 0 or h >= H:
                        continue  # this offset read a padding zero: nothing to give back
                    for j in range(kW):
                        v = ow * sW - pW + j * dW
                        if v < 0 or v >= W:
                            continue
                        at = (i * kW + j) * C
                        for c in range(C):
                            dx[n, h, v, c] += dcols[r, at + c]


def _check(x: np.ndarray, kH: int, kW: int, sH: int, sW: int, pH: int, pW: int, dH: int, dW: int,
           Ho: int, Wo: int, cols: np.ndarray, cols_name: str) -> None:
    """The buffers fit the sizes: x a C-ordered NHWC float array, cols (N*Ho*Wo, kH*kW*C) of its dtype."""
    expect("x", x, ndim=4, floating=True)
    expect_positive("kernel, stride, dilation", (kH, kW, sH, sW, dH, dW))
    expect_positive("padding", (pH, pW), minimum=0)
    N, H, W, C = x.shape
    sizes = (output_size(H, kH, sH, pH, dH), output_size(W, kW, sW, pW, dW))
    if (Ho, Wo) != sizes:
        raise ValueError(f"kernel argument Ho, Wo: expected {sizes} for this input and kernel, "
                         f"got {(Ho, Wo)}")
    expect(cols_name, cols, shape=(N * Ho * Wo, kH * kW * C), dtype=x.dtype)
    for name, a in (("x", x), (cols_name, cols)):
        if not a.flags.c_contiguous:
            raise ValueError(f"kernel argument {name}: expected a C-contiguous array")


def im2col_nhwc(x, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, cols) -> None:
    """Write the columns of NHWC ``x`` into ``cols`` (N*Ho*Wo, kH*kW*C); see ``_im2col_nhwc``."""
    _check(x, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, cols, "cols")
    parallel_for(_im2col_nhwc, x.shape[0] * Ho, x, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, cols)


def im2col_nhwc_rows(x, kH, kW, sH, sW, pH, pW, Ho, Wo, cols) -> None:
    """``im2col_nhwc`` without dilation, copying whole field rows (for few channels)."""
    _check(x, kH, kW, sH, sW, pH, pW, 1, 1, Ho, Wo, cols, "cols")
    _im2col_nhwc_rows(x, kH, kW, sH, sW, pH, pW, Ho, Wo, cols)


def col2im_nhwc(dcols, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, dx) -> None:
    """Set NHWC ``dx`` to the sum of ``dcols`` over the fields that read each pixel; see ``_col2im_nhwc``."""
    _check(dx, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, dcols, "dcols")
    parallel_for(_col2im_nhwc, dx.shape[0], dcols, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, dx)


# Below this many channels im2col copies whole field rows (``im2col_nhwc_rows``): the
# 7x7 RGB stem's columns build 3.1 ms -> 1.7 ms for two 224x224 images; from 16
# channels the plain kernel is as fast or faster (benchmarks/README.md).
FEW_CHANNELS = 16

# One work block per Python thread: NumPy releases the GIL inside a matrix product,
# so a block shared between threads could be overwritten by one thread's im2col
# while another thread's product still reads it.
class _Scratch(threading.local):
    def __init__(self) -> None:
        self.blocks: dict[np.dtype, np.ndarray] = {}


_scratch = _Scratch()


def columns_buffer(rows: int, width: int, dtype: np.dtype) -> np.ndarray:
    """A (rows, width) work matrix, carved from one reused block per dtype and thread.

    The columns matrix is large (kH*kW times the input) and lives only during one
    forward or backward call; reusing its memory avoids a fresh allocation and page
    faults each call. A block grows to the largest block of columns seen so far
    (``BLOCK_ROWS`` bounds it for most layers) and is freed with its thread.
    """
    blocks = _scratch.blocks
    size = rows * width
    block = blocks.get(dtype)
    if block is None or block.size < size:
        block = blocks[dtype] = np.empty(size, dtype=dtype)
    return block[:size].reshape(rows, width)


def columns(x_nhwc: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, Ho: int, Wo: int):
    N, _, _, C = x_nhwc.shape
    (kH, kW), (sH, sW), (pH, pW), (dH, dW) = kernel, stride, padding, dilation
    cols = columns_buffer(N * Ho * Wo, kH * kW * C, x_nhwc.dtype)
    _check(x_nhwc, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, cols, "cols")  # a public name: sizes checked
    # float32 only: float64 (gradient checks, not the fast path) takes the plain kernel, the
    # same columns, and the cold compile of every kernel is 0.6 s shorter (issue 28).
    if C < FEW_CHANNELS and (dH, dW) == (1, 1) and x_nhwc.dtype == np.float32:
        _im2col_nhwc_rows(x_nhwc, kH, kW, sH, sW, pH, pW, Ho, Wo, cols)
    else:
        parallel_for(_im2col_nhwc, N * Ho, x_nhwc, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, cols)
    return cols
