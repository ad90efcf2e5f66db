"""Batch normalisation as compiled Numba loops, one channel per parallel iteration.

Same formulas and signatures as ``batchnorm_reference`` (read that first), arranged
to touch memory as little as possible, since batch norm does almost no arithmetic
per byte:

- forward, training: per channel, one pass gathers sum and sum of squares (shifted
  by the channel's first value, so a large mean cannot cancel away the variance,
  and accumulated in float64), and a second writes y = a*x + b with
  a = gamma*inv_std;
- backward: one pass gathers sum(dy) and sum(dy*xhat), recomputing xhat from x
  instead of storing it, one pass writes dx.

Channels are independent, so the threads split the channels between them
(``tinyres.kernels.threads.parallel_for``) with no synchronisation.
A channel's data (N*S values, 256 KiB for (64, 64, 32, 32) float32) stays in the
core's cache between the two passes, so the second pass costs little.

**Channels last.** A convolution's output is NHWC memory viewed as NCHW (see
``tinyres.kernels.im2col_numba``). Copying it to NCHW here, and the result back
to NHWC for the next convolution, would cost more than the batch norm itself, so
such an input is treated as an (N*S, C) matrix of rows and the result keeps its
layout. A channel is then a strided column, so the sums run over fixed chunks of
rows in parallel (each chunk keeps its own per-channel sums), and the chunk sums
are added in a fixed order afterwards: the result does not depend on the number
of threads. Any other layout is made C-contiguous (N, C, S) first, in float32.

**float64** is not the fast path (it serves gradient checks): every layout runs the
channels-last row kernels, copied to that layout if need be, so the per-channel kernels
compile for float32 only: about 1 s less of a cold compile of every kernel (issue 28,
benchmarks/README.md). The numbers differ only in the order of the float64 sums.

>>> import numpy as np
>>> from tinyres.kernels import batchnorm_reference
>>> x = np.random.default_rng(0).standard_normal((4, 3, 5))
>>> g, b = np.full(3, 2.0), np.full(3, 0.5)
>>> ours, ref = train_forward(x, g, b, 1e-5), batchnorm_reference.train_forward(x, g, b, 1e-5)
>>> all(np.allclose(o, r, rtol=1e-12) for o, r in zip(ours, ref))
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tinyres.kernels import batchnorm_reference, buffers
from tinyres.kernels.layout import is_channels_last
from tinyres.kernels.sizes import expect
from tinyres.kernels.threads import parallel_for

# Let LLVM reorder the additions of a running sum, so it can keep several partial
# sums in SIMD lanes: the reductions run ~10x faster. Only the order of rounding
# changes (the sums are float64 either way); NaN and inf keep their meaning, which
# full fastmath would not promise.
REASSOCIATE = {"reassoc"}


@njit(cache=True, fastmath=REASSOCIATE)
def _channel_statistics(x, ch):  # pragma: no cover - compiled
    """Mean and biased variance of channel ``ch``, in float64."""
    n, _, s = x.shape
    m = n * s
    shift = np.float64(x[0, ch, 0])
    total = 0.0
    squares = 0.0
    for i in range(n):
        for j in range(s):
            d = np.float64(x[i, ch, j]) - shift
            total += d
            squares += d * d
    return shift + total / m, max((squares - total * total / m) / m, 0.0)


@njit(cache=True)
def _channel_affine(x, ch, scale, shift, out):  # pragma: no cover - compiled
    """out = scale[ch] * x + shift[ch] on channel ``ch`` (scale, shift of x's dtype)."""
    n, _, s = x.shape
    a = scale[ch]
    b = shift[ch]
    for i in range(n):
        for j in range(s):
            out[i, ch, j] = a * x[i, ch, j] + b


@njit(nogil=True, cache=True)
def _train_forward(start, stop, x, gamma, beta, eps, out, mean, var, scale, shift):  # pragma: no cover
    """Channels [start, stop): statistics into mean, var; y into out (scale, shift: work arrays)."""
    for ch in range(start, stop):
        mu, v = _channel_statistics(x, ch)
        mean[ch] = mu
        var[ch] = v
        a = gamma[ch] / np.sqrt(v + eps)
        scale[ch] = a
        shift[ch] = beta[ch] - mu * a
        # Right after the statistics: the channel's data is still in this core's cache.
        _channel_affine(x, ch, scale, shift, out)


@njit(nogil=True, cache=True)
def _affine(start, stop, x, scale, shift, out):  # pragma: no cover - compiled
    for ch in range(start, stop):
        _channel_affine(x, ch, scale, shift, out)


@njit(nogil=True, cache=True, fastmath=REASSOCIATE)
def _backward(start, stop, dy, x, mean, inv_std, gamma, training, dx, dgamma, dbeta):  # pragma: no cover
    n, _, s = x.shape
    m = n * s
    for ch in range(start, stop):
        mu = mean[ch]
        k = inv_std[ch]
        sum_dy = 0.0
        sum_dy_xhat = 0.0
        for i in range(n):
            for j in range(s):
                g = np.float64(dy[i, ch, j])
                sum_dy += g
                sum_dy_xhat += g * (np.float64(x[i, ch, j]) - mu) * k
        dbeta[ch] = sum_dy
        dgamma[ch] = sum_dy_xhat
        scale = gamma[ch] * k
        if training:
            # dx = scale/M * (M*dy - sum_dy - xhat*sum_dy_xhat), folded to a*dy + b*x + c
            a = scale
            b = -scale * k * sum_dy_xhat / m
            c0 = -scale * sum_dy / m - b * mu
            for i in range(n):
                for j in range(s):
                    dx[i, ch, j] = a * dy[i, ch, j] + b * x[i, ch, j] + c0
        else:
            for i in range(n):
                for j in range(s):
                    dx[i, ch, j] = scale * dy[i, ch, j]


# Row chunks of the channels-last sums: a fixed number, so results never depend on
# the thread count, and enough to keep every core busy.
CHUNKS = 64


@njit(cache=True)
def _chunk(k, chunks, m):  # pragma: no cover - compiled
    """Rows [start, stop) of chunk k when m rows are split into ``chunks`` parts."""
    return k * m // chunks, (k + 1) * m // chunks


# The two sums below accumulate a chunk in arrays of their own and copy them out once: summed
# straight into totals[k, ch], LLVM could not prove that x and totals do not overlap and
# reloaded the sums from memory every row (0.43 ms against 0.35 for (65536, 16) float32
# rows, one thread). The order of the additions is the same. They are zeroed and copied
# out by element loops: a slice assignment (total[:] = 0.0, totals[k] = total) compiles
# Numba's broadcasting setitem, whose shape-mismatch message pulls in its int-to-str and
# string-concatenation code: 2.4 s of a cold compile (issue 28, benchmarks/README.md).
@njit(nogil=True, cache=True, fastmath=REASSOCIATE)
def _rows_statistics(first, last, x, shift, totals, squares):  # pragma: no cover - compiled
    """Per chunk k in [first, last) of the rows of x (M, C): sums of d and d^2, d = x - shift, in float64."""
    m, c = x.shape
    chunks = totals.shape[0]
    total, square = np.empty(c), np.empty(c)
    for k in range(first, last):
        start, stop = _chunk(k, chunks, m)
        for ch in range(c):  # loops, not total[:] = 0.0: see the comment above
            total[ch] = 0.0
            square[ch] = 0.0
        for r in range(start, stop):
            for ch in range(c):
                d = np.float64(x[r, ch]) - shift[ch]
                total[ch] += d
                square[ch] += d * d
        for ch in range(c):  # a loop, not totals[k] = total: see the comment above
            totals[k, ch] = total[ch]
            squares[k, ch] = square[ch]


@njit(nogil=True, cache=True, fastmath=REASSOCIATE)
def _rows_backward_sums(first, last, dy, x, mean, sums_dy, sums_dy_xc):  # pragma: no cover - compiled
    """Per chunk k in [first, last) of the rows: sums of dy and of dy * (x - mean), in float64."""
    m, c = x.shape
    chunks = sums_dy.shape[0]
    sum_dy, sum_dy_xc = np.empty(c), np.empty(c)
    for k in range(first, last):
        start, stop = _chunk(k, chunks, m)
        for ch in range(c):
            sum_dy[ch] = 0.0
            sum_dy_xc[ch] = 0.0
        for r in range(start, stop):
            for ch in range(c):
                g = np.float64(dy[r, ch])
                sum_dy[ch] += g
                sum_dy_xc[ch] += g * (np.float64(x[r, ch]) - mean[ch])
        for ch in range(c):
            sums_dy[k, ch] = sum_dy[ch]
            sums_dy_xc[k, ch] = sum_dy_xc[ch]


@njit(nogil=True, cache=True)
def _rows_affine(start, stop, x, scale, shift, out):  # pragma: no cover - compiled
    """out[r, ch] = scale[ch] * x[r, ch] + shift[ch] for the rows r in [start, stop)."""
    c = x.shape[1]
    for r in range(start, stop):
        for ch in range(c):
            out[r, ch] = scale[ch] * x[r, ch] + shift[ch]


@njit(nogil=True, cache=True)
def _rows_input_grad(start, stop, dy, x, a, b, c0, dx):  # pragma: no cover - compiled
    """dx[r, ch] = a[ch] * dy[r, ch] + b[ch] * x[r, ch] + c0[ch] for the rows r in [start, stop)."""
    c = x.shape[1]
    for r in range(start, stop):
        for ch in range(c):
            dx[r, ch] = a[ch] * dy[r, ch] + b[ch] * x[r, ch] + c0[ch]


def _check(x: np.ndarray, **per_channel: np.ndarray) -> None:
    """Cheap checks before any kernel: x is (N, C, S) floats, the others (C,) arrays."""
    expect("x", x, ndim=3, floating=True)
    for name, a in per_channel.items():
        expect(name, a, shape=(x.shape[1],))


def _by_rows(x: np.ndarray) -> bool:
    """Whether the row kernels serve x: channels last, or float64 in any layout (see the top)."""
    return is_channels_last(x) or x.dtype == np.float64


def _rows(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(N, C, S) ``a`` as the (N*S, C) matrix of its channels-last memory (copied if need be)."""
    return np.ascontiguousarray(a.transpose(0, 2, 1), dtype=dtype).reshape(-1, a.shape[1])


def _unrows(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The (N*S, C) matrix back as an (N, C, S) view."""
    n, c, s = shape
    return rows.reshape(n, s, c).transpose(0, 2, 1)


def _rows_coefficients(rows, gamma, beta, eps):
    """Of an (M, C) matrix of rows: the batch's mean, biased var and inv_std (float64), and
    the affine step's per-channel scale and shift, in the rows' dtype (y = scale*x + shift)."""
    chunks = min(CHUNKS, rows.shape[0])
    totals, squares = np.empty((chunks, rows.shape[1])), np.empty((chunks, rows.shape[1]))
    shift = rows[0].astype(np.float64)
    parallel_for(_rows_statistics, chunks, rows, shift, totals, squares)
    m = rows.shape[0]
    total, square = totals.sum(axis=0), squares.sum(axis=0)
    mean = shift + total / m
    var = np.maximum((square - total * total / m) / m, 0.0)
    inv_std = 1.0 / np.sqrt(var + eps)
    scale = gamma.astype(np.float64) * inv_std
    shift = (beta - mean * scale).astype(rows.dtype)
    return mean, var, inv_std, scale.astype(rows.dtype), shift


def _rows_train_forward(x, gamma, beta, eps):
    rows = _rows(x, x.dtype)
    mean, var, inv_std, scale, shift = _rows_coefficients(rows, gamma, beta, eps)
    out = buffers.empty_like(rows)
    parallel_for(_rows_affine, rows.shape[0], rows, scale, shift, out)
    return _unrows(out, x.shape), mean.astype(x.dtype), var.astype(x.dtype), inv_std.astype(x.dtype)


def _rows_backward(dy, x, mean, inv_std, gamma, training):
    rows, dy_rows = _rows(x, x.dtype), _rows(dy, x.dtype)
    m, c = rows.shape
    chunks = min(CHUNKS, m)
    sums_dy, sums_dy_xc = np.empty((chunks, c)), np.empty((chunks, c))
    mean, inv_std = mean.astype(np.float64), inv_std.astype(np.float64)
    parallel_for(_rows_backward_sums, chunks, dy_rows, rows, mean, sums_dy, sums_dy_xc)
    dbeta = sums_dy.sum(axis=0)
    dgamma = sums_dy_xc.sum(axis=0) * inv_std
    scale = gamma.astype(np.float64) * inv_std
    if training:  # the same fold as the NCHW kernel: dx = a*dy + b*x + c0
        b = -scale * inv_std * dgamma / m
        c0 = -scale * dbeta / m - b * mean
    else:
        b, c0 = np.zeros(c), np.zeros(c)
    dx = buffers.empty_like(rows)
    parallel_for(_rows_input_grad, m, dy_rows, rows, scale, b, c0, dx)
    return _unrows(dx, x.shape), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def train_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y, mean, biased var, inv_std of an (N, C, S) batch (see the reference)."""
    _check(x, gamma=gamma, beta=beta)
    if _by_rows(x):
        return _rows_train_forward(x, gamma, beta, eps)
    x = np.ascontiguousarray(x)
    c = x.shape[1]
    out, mean, var = buffers.empty_like(x), np.empty(c), np.empty(c)
    # scale, shift: x's dtype, so the affine pass multiplies in float32 for float32 data.
    scale, shift = np.empty(c, x.dtype), np.empty(c, x.dtype)
    parallel_for(_train_forward, c, x, gamma.astype(np.float64), beta.astype(np.float64), eps, out, mean, var,
                 scale, shift)
    inv_std = 1.0 / np.sqrt(var + eps)
    return out, mean.astype(x.dtype), var.astype(x.dtype), inv_std.astype(x.dtype)


def eval_forward(
    x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """y = gamma * (x - mean) * inv_std + beta, as one multiply-add per element."""
    _check(x, mean=mean, inv_std=inv_std, gamma=gamma, beta=beta)
    scale = gamma.astype(np.float64) * inv_std
    shift = beta - mean * scale
    if _by_rows(x):
        out = buffers.empty((x.shape[0] * x.shape[2], x.shape[1]), x.dtype)
        rows = _rows(x, x.dtype)
        parallel_for(_rows_affine, rows.shape[0], rows, scale.astype(x.dtype), shift.astype(x.dtype), out)
        return _unrows(out, x.shape)
    x = np.ascontiguousarray(x)
    out = buffers.empty_like(x)
    parallel_for(_affine, x.shape[1], x, scale.astype(x.dtype), shift.astype(x.dtype), out)
    return out


def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    training: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx, dgamma, dbeta by the compact closed form (see the reference)."""
    _check(x, mean=mean, inv_std=inv_std, gamma=gamma)
    expect("dy", dy, shape=x.shape)
    if _by_rows(x):
        return _rows_backward(dy, x, mean, inv_std, gamma, training)
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    c = x.shape[1]
    dx = buffers.empty_like(x)
    dgamma, dbeta = np.empty(c), np.empty(c)
    as64 = np.float64
    parallel_for(_backward, c, dy, x, mean.astype(as64), inv_std.astype(as64), gamma.astype(as64), training,
                 dx, dgamma, dbeta)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


forward, backward = batchnorm_reference.protocol(train_forward, eval_forward, batch_norm_backward)
