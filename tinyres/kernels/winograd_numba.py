r"""Winograd F(m x m, 3 x 3) convolution: Numba transforms, BLAS batched products.

The algorithm of ``tinyres.kernels.winograd_reference`` (read that first, with the
math), arranged for speed like ``im2col_numba``:

- **Channels last.** Input, output and gradients are NHWC memory (NCHW views), so a
  tile's pixel is a run of C contiguous numbers and every transform works on whole
  channel runs (the compiler vectorises those inner loops).
- **Transformed tiles as a stack of matrices**: V has shape (a*a, tiles, C), so the
  (m+2)^2 elementwise products summed over channels are one batched ``np.matmul``,
  M = V @ U with U of shape (a*a, C, C_out); backward's dU = V^T @ dM likewise.
- **Three Numba kernels** over a range of tile rows, split between the threads by
  ``tinyres.kernels.threads.parallel_for``, each a pair of small constant-matrix products per tile,
  skipping the zeros of B^T and A^T: the input transform B^T d B, the output
  transform A^T M A, and its transpose A dY A^T for the gradient. The filter
  transforms (G g G^T, G^T dU G) touch C*C_out*9 numbers and stay NumPy.
- **Each product on one BLAS thread, the batch split between Python threads**
  (``tinyres.kernels.threads.batched_matmul``). OpenBLAS splits one product over the rows and columns of its
  result; with (m+2)^2 products whose results are only C x C_out, its two threads
  synchronise far more often than they compute: V^T @ dM took 2.2-10.6 s with two
  OpenBLAS threads on the busy 2-core machine, 20-60 ms on one.
- **Blocks of samples** (``BLOCK_VALUES``): transform, multiply and transform back a
  few samples at a time, so V and M are still in cache when the next step reads them.
- **Backward recomputes V** from the input instead of keeping it from the forward
  (2.25x the input for F(4x4): too much memory to hold for every layer of a network).

The kernels are private: ``conv2d_forward`` and ``conv2d_backward`` check shapes
and allocate every array they write before a kernel runs, and every read of an image
is guarded by bounds tests (tiles past the edge read zeros), so no shape makes a
kernel touch memory outside its arrays.

>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
>>> from tinyres.kernels import conv_reference
>>> want = conv_reference.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
>>> np.allclose(conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1)), want)
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tinyres.kernels import conv_reference
from tinyres.kernels.im2col_numba import prepare
from tinyres.kernels.layout import to_channels_last
from tinyres.kernels.sizes import Pair
from tinyres.kernels.threads import batched_matmul, parallel_for
from tinyres.kernels.winograd_reference import MATRICES, check_applies, filter_transform, tile_grid, tiled


@njit(nogil=True, cache=True)
def _input_transform(start, stop, x, BT, m, top, left, tiles_h, tiles_w, V):  # pragma: no cover
    """V[xi*a + nu, tile, c] = (B^T d B)[xi, nu] for the tile d at padded (th*m, tw*m), channel c.

    d[k, l] = x[n, th*m - top + k, tw*m - left + l, c], or 0 outside x; for the tile
    rows ``row = n*tiles_h + th`` in [start, stop).
    """
    _, H, W, C = x.shape
    a = BT.shape[0]
    d = np.empty((a, a, C), dtype=x.dtype)
    half = np.empty((a, a, C), dtype=x.dtype)  # B^T d
    for row in range(start, stop):
        n = row // tiles_h
        th = row - n * tiles_h
        for tw in range(tiles_w):
            for k in range(a):
                h = th * m - top + k
                for q in range(a):
                    v = tw * m - left + q
                    if 0 <= h < H and 0 <= v < W:
                        for c in range(C):
                            d[k, q, c] = x[n, h, v, c]
                    else:
                        for c in range(C):
                            d[k, q, c] = 0.0
            for xi in range(a):
                half[xi] = 0.0
                for k in range(a):
                    coefficient = BT[xi, k]
                    if coefficient != 0.0:
                        for q in range(a):
                            for c in range(C):
                                half[xi, q, c] += coefficient * d[k, q, c]
            tile = row * tiles_w + tw
            for xi in range(a):
                for nu in range(a):
                    out = V[xi * a + nu, tile]
                    out[:] = 0.0
                    for q in range(a):
                        coefficient = BT[nu, q]
                        if coefficient != 0.0:
                            for c in range(C):
                                out[c] += coefficient * half[xi, q, c]


@njit(nogil=True, cache=True)
def _output_transform(start, stop, M, AT, tiles_h, tiles_w, y):  # pragma: no cover - compiled
    """y[n, th*m + i, tw*m + j, o] = (A^T M A)[i, j] for each tile, where inside y (rows [start, stop))."""
    _, Ho, Wo, C = y.shape
    m, a = AT.shape
    half = np.empty((m, a, C), dtype=y.dtype)  # A^T M
    for row in range(start, stop):
        n = row // tiles_h
        th = row - n * tiles_h
        for tw in range(tiles_w):
            tile = row * tiles_w + tw
            for i in range(m):
                half[i] = 0.0
                for xi in range(a):
                    coefficient = AT[i, xi]
                    if coefficient != 0.0:
                        for nu in range(a):
                            source = M[xi * a + nu, tile]
                            for c in range(C):
                                half[i, nu, c] += coefficient * source[c]
            for i in range(m):
                h = th * m + i
                if h >= Ho:
                    break  # the tile's rows past the edge computed outputs nobody uses
                for j in range(m):
                    v = tw * m + j
                    if v >= Wo:
                        break
                    out = y[n, h, v]
                    out[:] = 0.0
                    for nu in range(a):
                        coefficient = AT[j, nu]
                        if coefficient != 0.0:
                            for c in range(C):
                                out[c] += coefficient * half[i, nu, c]


@njit(nogil=True, cache=True)
def _gradient_transform(start, stop, dy, AT, tiles_h, tiles_w, dM):  # pragma: no cover - compiled
    """dM[xi*a + nu, tile, o] = (A dY A^T)[xi, nu], dY the tile's m x m gradients (0 past the edge).

    For the tile rows ``row = n*tiles_h + th`` in [start, stop).
    """
    _, Ho, Wo, C = dy.shape
    m, a = AT.shape
    half = np.empty((a, m, C), dtype=dy.dtype)  # A dY
    for row in range(start, stop):
        n = row // tiles_h
        th = row - n * tiles_h
        for tw in range(tiles_w):
            half[:] = 0.0
            for i in range(m):
                h = th * m + i
                if h >= Ho:
                    break
                for j in range(m):
                    v = tw * m + j
                    if v >= Wo:
                        break
                    source = dy[n, h, v]
                    for xi in range(a):
                        coefficient = AT[i, xi]
                        if coefficient != 0.0:
                            for c in range(C):
                                half[xi, j, c] += coefficient * source[c]
            tile = row * tiles_w + tw
            for xi in range(a):
                for nu in range(a):
                    out = dM[xi * a + nu, tile]
                    out[:] = 0.0
                    for j in range(m):
                        coefficient = AT[j, nu]
                        if coefficient != 0.0:
                            for c in range(C):
                                out[c] += coefficient * half[xi, j, c]


def _transformed_input(x_nhwc: np.ndarray, padding: tuple[int, int], m: int) -> np.ndarray:
    """V (a*a, tiles, C) of a C-ordered NHWC image; padding may be negative (it crops)."""
    N, H, W, C = x_nhwc.shape
    _, _, tiles_h, tiles_w = tile_grid(H, W, padding, m)
    BT = MATRICES[m][0].astype(x_nhwc.dtype)
    V = np.empty(((m + 2) ** 2, N * tiles_h * tiles_w, C), dtype=x_nhwc.dtype)
    parallel_for(_input_transform, N * tiles_h, x_nhwc, BT, m, padding[0], padding[1], tiles_h, tiles_w, V)
    return V


# Transformed values per block of samples: V and M of a 16-channel CIFAR layer at batch
# 64 are 9.4 MB each, beyond the caches; blocks of about this many numbers (1 MB in
# float32) are transformed, multiplied and transformed back while still in cache.
BLOCK_VALUES = 2**18


def _sample_blocks(N: int, tiles_per_sample: int, a: int, channels: int) -> list[tuple[int, int]]:
    """Runs of whole samples whose transformed tiles hold about ``BLOCK_VALUES`` numbers."""
    per = max(1, BLOCK_VALUES // (a * a * tiles_per_sample * channels))
    return [(n, min(N, n + per)) for n in range(0, N, per)]


def _correlate(x_nhwc: np.ndarray, w: np.ndarray, padding: tuple[int, int], m: int) -> np.ndarray:
    """3x3 correlation, stride 1, of a C-ordered NHWC image: the NHWC output (N, Ho, Wo, C_out)."""
    N, H, W, C = x_nhwc.shape
    C_out = w.shape[0]
    Ho, Wo, tiles_h, tiles_w = tile_grid(H, W, padding, m)
    a = m + 2
    # (a, a, C_out, C) -> (a*a, C, C_out): V @ U sums over C for every tile at once.
    U = np.ascontiguousarray(filter_transform(w, m).reshape(a * a, C_out, C).transpose(0, 2, 1))
    AT = MATRICES[m][2].astype(x_nhwc.dtype)
    y = np.empty((N, Ho, Wo, C_out), dtype=x_nhwc.dtype)
    for n0, n1 in _sample_blocks(N, tiles_h * tiles_w, a, max(C, C_out)):
        V = _transformed_input(x_nhwc[n0:n1], padding, m)
        M = batched_matmul(V, U, np.empty((a * a, V.shape[1], C_out), dtype=V.dtype))
        parallel_for(_output_transform, (n1 - n0) * tiles_h, M, AT, tiles_h, tiles_w, y[n0:n1])
    return y


def _check(x: np.ndarray, w: np.ndarray, stride: Pair, dilation: Pair, m: int) -> None:
    check_applies(w.shape, stride, dilation)
    if m not in MATRICES:
        raise ValueError(f"winograd: tile size m must be one of {tuple(MATRICES)}, got {m}")
    if x.ndim != 4 or x.shape[1] != w.shape[1] or x.dtype != w.dtype:
        raise ValueError(f"winograd: input {x.shape} {x.dtype} does not fit weight {w.shape} {w.dtype}")


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair,
    m: int = 4,
) -> np.ndarray:
    """y = conv2d(x, w) + b by Winograd F(m x m, 3 x 3); channels-last output, as im2col_numba's."""
    _check(x, w, stride, dilation, m)
    y = _correlate(to_channels_last(x), w, tuple(padding), m)
    if b is not None:
        y += b
    return y.transpose(0, 3, 1, 2)


def conv2d_backward(
    grad: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    input_grad: bool = True,
    bias_grad: bool = True,
    m: int = 4,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dw, db): dw = G^T (sum over tiles of V^T dM) G, dx = Winograd conv of dy (see the reference)."""
    _check(x, w, stride, dilation, m)
    N, C, H, W = x.shape
    C_out = w.shape[0]
    Ho, Wo, tiles_h, tiles_w = tile_grid(H, W, padding, m)
    if grad.shape != (N, C_out, Ho, Wo):
        raise ValueError(f"winograd: gradient shape {grad.shape}, expected {(N, C_out, Ho, Wo)}")
    a = m + 2
    _, G, AT = (t.astype(x.dtype) for t in MATRICES[m])
    g, x_nhwc = to_channels_last(grad), to_channels_last(x)
    dU, term = (np.zeros((a * a, C, C_out), dtype=x.dtype) for _ in range(2))
    for n0, n1 in _sample_blocks(N, tiles_h * tiles_w, a, max(C, C_out)):
        V = _transformed_input(x_nhwc[n0:n1], tuple(padding), m)
        dM = np.empty((a * a, V.shape[1], C_out), dtype=x.dtype)
        parallel_for(_gradient_transform, (n1 - n0) * tiles_h, g[n0:n1], AT, tiles_h, tiles_w, dM)
        # V^T @ dM: (a*a, C, tiles) @ (a*a, tiles, C_out), summed block by block in a fixed order.
        dU += batched_matmul(V.transpose(0, 2, 1), dM, term)
    dU = dU.reshape(a, a, C, C_out)
    dw = np.einsum("ik,ijco,jl->ockl", G, dU, G)  # G^T dU G
    db = g.reshape(-1, C_out).sum(axis=0) if bias_grad else None
    if not input_grad:
        return None, dw, db
    turned = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, C_out, 3, 3)
    dx = _correlate(g, turned, (2 - padding[0], 2 - padding[1]), m)
    return dx.transpose(0, 3, 1, 2), dw, db


# One copy of x in the layout these kernels read (none if x already is channels last, as
# a previous convolution's output is) serves forward and backward, as in im2col_numba.
forward, backward = conv_reference.protocol(conv2d_forward, conv2d_backward, prepare=prepare)
with_tile = tiled(__name__, forward, backward)
