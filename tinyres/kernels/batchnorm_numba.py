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

Channels are independent, so ``prange`` over channels needs no synchronisation.
A channel's data (N*S values, 256 KiB for (64, 64, 32, 32) float32) stays in the
core's cache between the two passes, so the second pass costs little.
The Python wrappers make the (N, C, S) arrays C-contiguous before a kernel runs.

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
from numba import njit, prange

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


@njit(parallel=True, cache=True)
def _train_forward(x, gamma, beta, eps, out, mean, var):  # pragma: no cover - compiled
    c = x.shape[1]
    # Arrays of x's dtype, so the affine pass multiplies in float32 for float32 data.
    scale = np.empty(c, x.dtype)
    shift = np.empty(c, x.dtype)
    for ch in prange(c):
        mu, v = _channel_statistics(x, ch)
        mean[ch] = mu
        var[ch] = v
        a = gamma[ch] / np.sqrt(v + eps)
        scale[ch] = a
        shift[ch] = beta[ch] - mu * a
        # Right after the statistics: the channel's data is still in this core's cache.
        _channel_affine(x, ch, scale, shift, out)


@njit(parallel=True, cache=True)
def _affine(x, scale, shift, out):  # pragma: no cover - compiled
    for ch in prange(x.shape[1]):
        _channel_affine(x, ch, scale, shift, out)


@njit(parallel=True, cache=True, fastmath=REASSOCIATE)
def _backward(dy, x, mean, inv_std, gamma, training, dx, dgamma, dbeta):  # pragma: no cover
    n, c, s = x.shape
    m = n * s
    for ch in prange(c):
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


def train_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y, mean, biased var, inv_std of an (N, C, S) batch (see the reference)."""
    x = np.ascontiguousarray(x)
    c = x.shape[1]
    out, mean, var = np.empty_like(x), np.empty(c), np.empty(c)
    _train_forward(x, gamma.astype(np.float64), beta.astype(np.float64), eps, out, mean, var)
    inv_std = 1.0 / np.sqrt(var + eps)
    return out, mean.astype(x.dtype), var.astype(x.dtype), inv_std.astype(x.dtype)


def eval_forward(
    x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """y = gamma * (x - mean) * inv_std + beta, as one multiply-add per element."""
    x = np.ascontiguousarray(x)
    scale = gamma.astype(np.float64) * inv_std
    shift = beta - mean * scale
    out = np.empty_like(x)
    _affine(x, scale.astype(x.dtype), shift.astype(x.dtype), out)
    return out


def backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    training: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx, dgamma, dbeta by the compact closed form (see the reference)."""
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    c = x.shape[1]
    dx = np.empty_like(x)
    dgamma, dbeta = np.empty(c), np.empty(c)
    as64 = np.float64
    _backward(
        dy, x, mean.astype(as64), inv_std.astype(as64), gamma.astype(as64), training, dx, dgamma, dbeta
    )
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)
