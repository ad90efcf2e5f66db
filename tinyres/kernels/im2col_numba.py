r"""2-d convolution with Numba im2col/col2im kernels and BLAS matrix products.

The same algorithm as ``tinyres.kernels.im2col_numpy`` (read that first), arranged for speed:

- **Channels last inside** (``tinyres.kernels.layout``). The input is viewed as NHWC,
  so one receptive field is kH*kW runs of C contiguous numbers, and the columns
  matrix is (N*Ho*Wo, kH*kW*C) with rows written front to back. The GEMM result
  (N*Ho*Wo, C_out) *is* the output in NHWC; it is handed back as an NCHW view (no
  copy), and the next convolution's ``transpose(0, 2, 3, 1)`` of it is free again.
- **Three BLAS products**: Y = cols @ W^T, dW^T = cols^T @ dY, dcols = dY @ W.
- **Blocks of samples, one thread each**: the columns are built for a few samples at
  a time (``BLOCK_ROWS``) and used at once, so they are still in cache when the matrix
  product reads them, instead of one huge matrix written to and read back from
  memory. tinyres's pool (``tinyres.kernels.threads``) hands whole blocks to its
  threads, and each block's im2col, product and col2im run on one thread with BLAS
  on one thread (``single_threaded_blas``): no BLAS worker thread competes with the
  pool, and overlapping fields add onto pixels of their own samples only (no atomics).
- **The same numbers on any number of threads**: the blocks do not depend on the
  thread count, and the weight gradient adds the blocks' parts in block order.
- **No saved columns**: backward rebuilds them (im2col is cheap next to a GEMM); the
  memory of one block's columns is reused from call to call instead of allocated.
- **Pointwise layers need no columns at all**: a 1x1 convolution (stride 1, no
  padding) is a matrix product in either layout. An NCHW input is not copied to
  channels last: each sample is one product, Y[n] = X[n]^T @ W^T with X[n] its
  (C, H*W) matrix read transposed by BLAS, and the output is channels last like every
  other convolution's (see ``kernel_layout``).

The compiled im2col/col2im loops and their reused memory are in
``tinyres.kernels.columns_numba``. Users' arguments are checked with clear messages by
``tinyres.nn.functional.conv2d``; the public functions here check their arrays again
(``tinyres.kernels.sizes``, a few comparisons), so no call can make a kernel touch
memory outside its arrays.

>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
>>> from tinyres.kernels import conv_reference
>>> args = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2))
>>> np.allclose(conv2d_forward(x, w, None, **args), conv_reference.conv2d_forward(x, w, None, **args))
True
"""

from __future__ import annotations

import numpy as np

from tinyres.kernels import buffers, conv_reference
from tinyres.kernels.columns_numba import col2im_nhwc, columns, columns_buffer
from tinyres.kernels.layout import from_channels_last, is_channels_last, to_channels_last
from tinyres.kernels.sizes import Pair, expect, expect_positive, output_size
from tinyres.kernels.threads import run_split_with_blas

# Column rows per block: the columns of a 16-channel 3x3 layer at batch 64 are 38 MB,
# far beyond the caches; a block of whole samples of about this many rows (4.7 MB
# there) is built and consumed by its matrix product while still (mostly) in cache.
# Measured with benchmarks/bench_conv.py: about 30% off that layer's forward.
BLOCK_ROWS = 8192
# At least this many blocks a batch (when it has that many samples), so that both cores
# get work on the small late layers too; fixed, not the thread count, so that the
# weight gradient's sum order, and so its rounding, is the same on any number of threads.
MIN_BLOCKS = 4

def _pointwise(kernel: Pair, stride: Pair, padding: Pair) -> bool:
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


def kernel_layout(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """``x`` (N, C, H, W) in the memory layout the kernels below read without a copy.

    Channels last (an NCHW view of NHWC memory), which a previous convolution's output
    already is; but a pointwise layer keeps a C-ordered NCHW input as it is, since it
    needs no columns and its per-sample products read NCHW directly. (Its output is
    channels last all the same: a network whose layers disagree on the layout pays
    for copies further on, measured 15% of a ResNet-50 forward.)

    >>> x = np.zeros((2, 3, 4, 5), dtype=np.float32)
    >>> kernel_layout(x, (3, 3), (1, 1), (1, 1)).transpose(0, 2, 3, 1).flags.c_contiguous
    True
    >>> kernel_layout(x, (1, 1), (1, 1), (0, 0)) is x
    True
    """
    if _pointwise(kernel, stride, padding) and x.flags.c_contiguous:
        return x
    return from_channels_last(to_channels_last(x))


def _weight_matrix(w: np.ndarray) -> np.ndarray:
    """(C_out, C, kH, kW) -> (C_out, kH*kW*C), matching the columns' (i, j, c) order."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def _weight_layout(dw_t: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(kH*kW*C, C_out), the rows in (i, j, c) order, -> a C-ordered (C_out, C, kH, kW).

    Two copies: a single transpose of all four axes reads numbers C*C_out apart in
    its inner loop, and took 1.6 ms for a 256-channel 3x3 weight against 0.7 ms.
    """
    C_out, C, kH, kW = shape
    by_input_channel = np.ascontiguousarray(dw_t.reshape(kH * kW, C, C_out).transpose(1, 2, 0))
    return np.ascontiguousarray(by_input_channel.transpose(1, 0, 2)).reshape(shape)


def _sample_blocks(N: int, Ho: int, Wo: int) -> list[tuple[int, int]]:
    """Split the batch into runs of whole samples of at most about ``BLOCK_ROWS`` column rows.

    At least ``MIN_BLOCKS`` runs where the batch allows, whatever the thread count.

    >>> _sample_blocks(64, 32, 32)[:2], len(_sample_blocks(64, 32, 32))
    ([(0, 8), (8, 16)], 8)
    >>> _sample_blocks(64, 8, 8)
    [(0, 16), (16, 32), (32, 48), (48, 64)]
    """
    per = max(1, min(BLOCK_ROWS // (Ho * Wo), -(-N // MIN_BLOCKS)))
    return [(n, min(N, n + per)) for n in range(0, N, per)]


def _sum_in_block_order(parts: np.ndarray) -> np.ndarray:
    """parts[0] + parts[1] + ..., in that order (into parts[0]): the same sum on any number of threads."""
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def _check(x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair, dilation: Pair) -> None:
    """Cheap checks before any kernel: the shapes agree and the output is not empty."""
    expect("x", x, ndim=4, floating=True)
    expect("w", w, ndim=4, dtype=x.dtype)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"kernel argument w: expected {x.shape[1]} input channels, got shape {w.shape}")
    expect_positive("stride, dilation", (*stride, *dilation))
    expect_positive("padding", padding, minimum=0)
    for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation):
        if output_size(size, k, s, p, d) < 1:
            raise ValueError(f"kernel argument w: kernel {tuple(w.shape[2:])} does not fit input {x.shape}")


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """y = conv2d(x, w) + b: Numba im2col, then Y = cols @ W^T with BLAS, block by block."""
    _check(x, w, stride, padding, dilation)
    if b is not None:
        expect("b", b, shape=(w.shape[0],), dtype=x.dtype)
    N, _, H, W = x.shape
    C_out, _, kH, kW = w.shape
    if _pointwise((kH, kW), stride, padding):
        return _pointwise_forward(x, w, b)
    Ho = output_size(H, kH, stride[0], padding[0], dilation[0])
    Wo = output_size(W, kW, stride[1], padding[1], dilation[1])
    x_nhwc, w_t = to_channels_last(x), _weight_matrix(w).T
    y = buffers.empty((N * Ho * Wo, C_out), x.dtype)
    blocks = _sample_blocks(N, Ho, Wo)

    def run(first: int, last: int) -> None:
        for n0, n1 in blocks[first:last]:
            cols = columns(x_nhwc[n0:n1], (kH, kW), stride, padding, dilation, Ho, Wo)
            np.matmul(cols, w_t, out=y[n0 * Ho * Wo : n1 * Ho * Wo])

    run_split_with_blas(run, len(blocks))
    if b is not None:
        y += b
    return from_channels_last(y.reshape(N, Ho, Wo, C_out))


def conv2d_backward(
    grad: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    input_grad: bool = True,
    bias_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dw, db): dW^T = cols^T @ dY, dX = col2im(dY @ W), db = column sums of dY.

    Block by block, as the forward: dW^T adds up the blocks' cols^T @ dY (in a fixed
    order, so the result does not change from run to run).
    """
    _check(x, w, stride, padding, dilation)
    sizes = [output_size(*a) for a in zip(x.shape[2:], w.shape[2:], stride, padding, dilation)]
    expect("grad", grad, shape=(x.shape[0], w.shape[0], *sizes))
    N, C, H, W = x.shape
    C_out, _, kH, kW = w.shape
    if _pointwise((kH, kW), stride, padding):
        return _pointwise_backward(grad, x, w, input_grad, bias_grad)
    Ho, Wo = grad.shape[2:]
    g = to_channels_last(grad).reshape(N * Ho * Wo, C_out)
    x_nhwc, w_matrix = to_channels_last(x), _weight_matrix(w)
    dx = buffers.empty((N, H, W, C), x.dtype) if input_grad else None
    blocks = _sample_blocks(N, Ho, Wo)
    parts = np.empty((len(blocks), kH * kW * C, C_out), dtype=x.dtype)  # each block's cols^T @ dY

    def run(first: int, last: int) -> None:
        for k in range(first, last):
            n0, n1 = blocks[k]
            g_block = g[n0 * Ho * Wo : n1 * Ho * Wo]
            cols = columns(x_nhwc[n0:n1], (kH, kW), stride, padding, dilation, Ho, Wo)
            # cols^T @ dY, not the equal (dY^T @ cols)^T: BLAS splits the work over the rows of
            # the result, and a (C_out, M) @ (M, K) product has few rows (tiny C_out, huge M).
            np.matmul(cols.T, g_block, out=parts[k])
            if dx is not None:
                # The columns are used up, so dY @ W may overwrite their memory (the same buffer).
                dcols = columns_buffer(cols.shape[0], cols.shape[1], x.dtype)
                np.matmul(g_block, w_matrix, out=dcols)
                (sH, sW), (pH, pW), (dH, dW) = stride, padding, dilation
                col2im_nhwc(dcols, kH, kW, sH, sW, pH, pW, dH, dW, Ho, Wo, dx[n0:n1])

    run_split_with_blas(run, len(blocks))
    dw_t = _sum_in_block_order(parts)
    dw = _weight_layout(dw_t, w.shape)
    # Skipped without a bias: a column sum of the tall, narrow dY is slow in NumPy
    # (1.4 ms for a 16-channel layer at batch 64, a quarter of its backward's GEMMs).
    db = g.sum(axis=0) if bias_grad else None
    if not input_grad:
        return None, dw, db
    return from_channels_last(dx), dw, db


def _pointwise_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """A 1x1 convolution (stride 1, no padding) needs no columns: Y = X @ W^T, written channels last.

    X holds x's pixels as rows of C numbers. Channels-last x already is that matrix,
    (N*H*W, C), one product per block of samples. NCHW x is not copied: sample n is
    the (C, H*W) matrix X[n], read transposed by BLAS, one product per sample. Either
    way the (H*W, C_out) rows are the NHWC output the layers after this one expect.
    Blocks of samples run on the pool's threads, BLAS on one thread each.
    """
    N, C, H, W = x.shape
    C_out = w.shape[0]
    w_t = w.reshape(C_out, C).T
    y = buffers.empty((N * H * W, C_out), x.dtype)
    blocks = _sample_blocks(N, H, W)
    if is_channels_last(x):
        x_rows = to_channels_last(x).reshape(N * H * W, C)

        def run(first: int, last: int) -> None:
            for n0, n1 in blocks[first:last]:
                np.matmul(x_rows[n0 * H * W : n1 * H * W], w_t, out=y[n0 * H * W : n1 * H * W])
    else:
        x3, y3 = np.ascontiguousarray(x).reshape(N, C, H * W), y.reshape(N, H * W, C_out)

        def run(first: int, last: int) -> None:
            for n0, n1 in blocks[first:last]:
                np.matmul(x3[n0:n1].transpose(0, 2, 1), w_t, out=y3[n0:n1])

    run_split_with_blas(run, len(blocks))
    if b is not None:
        y += b
    return from_channels_last(y.reshape(N, H, W, C_out))


def _pointwise_backward(
    grad: np.ndarray, x: np.ndarray, w: np.ndarray, input_grad: bool, bias_grad: bool
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """dW = dY^T @ X and dX = dY @ W, with dY the (N*H*W, C_out) channels-last gradient.

    For NCHW x, per sample: dW = sum over n of dY[n]^T @ X[n]^T and dX[n] = W^T @ dY[n]^T,
    so dX comes out NCHW, the layout of x. Each block of samples adds its part of dW
    into its own matrix; the parts are added in block order (the same on any thread count).
    """
    N, C, H, W = x.shape
    C_out = w.shape[0]
    w_matrix = w.reshape(C_out, C)
    g = to_channels_last(grad).reshape(N * H * W, C_out)
    db = g.sum(axis=0) if bias_grad else None
    blocks = _sample_blocks(N, H, W)
    parts = np.zeros((len(blocks), C_out, C), dtype=x.dtype)
    if is_channels_last(x):
        x_rows = to_channels_last(x).reshape(N * H * W, C)
        dx_rows = buffers.empty((N * H * W, C), x.dtype) if input_grad else None

        def run(first: int, last: int) -> None:
            for k in range(first, last):
                rows = slice(blocks[k][0] * H * W, blocks[k][1] * H * W)
                # X^T @ dY, then transposed: as in conv2d_backward, BLAS should not split a
                # product with C_out rows and a huge inner dimension over its few rows.
                parts[k] = (x_rows[rows].T @ g[rows]).T
                if dx_rows is not None:
                    np.matmul(g[rows], w_matrix, out=dx_rows[rows])

        dx = None if dx_rows is None else from_channels_last(dx_rows.reshape(N, H, W, C))
    else:
        x3, g3 = np.ascontiguousarray(x).reshape(N, C, H * W), g.reshape(N, H * W, C_out)
        dx3 = buffers.empty((N, C, H * W), x.dtype) if input_grad else None

        def run(first: int, last: int) -> None:
            for k in range(first, last):
                n0, n1 = blocks[k]
                for n in range(n0, n1):  # sample by sample, in a fixed order: no (N, C_out, C) stack
                    parts[k] += g3[n].T @ x3[n].T
                if dx3 is not None:
                    np.matmul(w_matrix.T, g3[n0:n1].transpose(0, 2, 1), out=dx3[n0:n1])

        dx = None if dx3 is None else dx3.reshape(N, C, H, W)
    run_split_with_blas(run, len(blocks))
    dw = _sum_in_block_order(parts)
    return dx, np.ascontiguousarray(dw).reshape(w.shape), db


def prepare(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> tuple:
    """The forward's arguments with x in ``kernel_layout``: one copy of x (usually channels
    last; none at all if x already is, as a previous convolution's output is) serves
    forward and backward, since ``saved`` keeps it."""
    return kernel_layout(x, w.shape[2:], stride, padding), w, b, stride, padding, dilation


forward, backward = conv_reference.protocol(conv2d_forward, conv2d_backward, prepare=prepare)
