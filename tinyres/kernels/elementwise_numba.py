"""Compiled loops for ReLU and same-shape addition on large arrays.

These ops do one arithmetic step per element, so they are limited by memory
bandwidth, and a single NumPy ufunc is already close to it. What a kernel can add
is a second core (``prange`` splits the flat array between threads) and fusing the
ReLU backward's compare and select into one pass. ``tinyres.ops.elementwise`` uses
them only where ``benchmarks/bench_batchnorm.py`` measured a gain (see
``FAST_SIZE`` there); the results equal NumPy's exactly.

>>> import numpy as np
>>> x = np.array([-1.5, 0.0, 2.0], dtype=np.float32)
>>> relu_forward(x)
array([0., 0., 2.], dtype=float32)
>>> relu_backward(np.ones(3, np.float32), relu_forward(x))
array([0., 0., 1.], dtype=float32)
>>> add(x, x)
array([-3.,  0.,  4.], dtype=float32)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _relu(x, out):  # pragma: no cover - compiled
    for i in prange(x.size):
        v = x[i]
        # v > 0 is False for NaN, so write v itself unless it is <= 0: NaN propagates
        # as in np.maximum and torch.relu.
        out[i] = 0 if v <= 0 else v


@njit(parallel=True, cache=True)
def _relu_backward(grad, y, out):  # pragma: no cover - compiled
    for i in prange(grad.size):
        out[i] = grad[i] if y[i] > 0 else 0


@njit(parallel=True, cache=True)
def _add(a, b, out):  # pragma: no cover - compiled
    for i in prange(a.size):
        out[i] = a[i] + b[i]


def relu_forward(x: np.ndarray) -> np.ndarray:
    """max(x, 0) of a float array, any layout (non-contiguous input is copied first)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _relu(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(grad: np.ndarray, y: np.ndarray) -> np.ndarray:
    """grad where the forward output y is positive, else 0."""
    grad, y = np.ascontiguousarray(grad), np.ascontiguousarray(y)
    out = np.empty_like(grad)
    _relu_backward(grad.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b for two arrays of the same shape and dtype (the caller checks both)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty_like(a)
    _add(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out
