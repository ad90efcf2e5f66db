"""Batch norm + ReLU as compiled passes: the pair's memory traffic and storage, once.

Same formulas and signatures as ``batchnorm_relu_reference`` (read that first). Run
separately, batch norm writes y, ReLU reads y and writes z, and backward reads z and dz
to write ReLU's gradient, which batch norm's two passes then read again. Fused:

- forward: batch norm's statistics pass, then one pass writing z = max(a*x + b, 0)
  directly (the affine kernel with the ReLU in it): y is never written, never kept;
- backward: batch norm's two passes read dz and z and apply the mask as they go
  (``g = dz if z > 0 else 0``): ReLU's gradient array is never written.

The ResNet's batch norms receive a convolution's channels-last output, the layout these
kernels are written for (``batchnorm_numba``: an (N*S, C) matrix of rows, fixed chunks
added in a fixed order, so results do not depend on the thread count). A C-ordered
input (rare: the convolutions' outputs are channels last) runs the unfused pair's
kernels one after the other, which gives the same numbers.

z = a*x + b is computed in x's dtype exactly as ``batchnorm_numba`` does, so the fused
output equals ReLU of the unfused output bit for bit. NaN propagates, as in ``torch.relu``.

>>> import numpy as np
>>> from tinyres.kernels import batchnorm_relu_reference
>>> x = np.random.default_rng(0).standard_normal((4, 5, 3, 3)).astype(np.float32)
>>> x = x.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2).reshape(4, 5, 9)  # channels last
>>> g, b = np.full(5, 2.0, np.float32), np.full(5, 0.5, np.float32)
>>> ours, ref = forward(x, g, b, 1e-5)[0], batchnorm_relu_reference.forward(x, g, b, 1e-5)[0]
>>> bool(np.allclose(ours, ref, atol=1e-6))
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tinyres.kernels import batchnorm_numba, batchnorm_relu_reference, buffers, relu_numba
from tinyres.kernels.batchnorm_numba import CHUNKS, REASSOCIATE, _chunk, _rows, _unrows
from tinyres.kernels.layout import is_channels_last
from tinyres.kernels.sizes import expect
from tinyres.kernels.threads import parallel_for


@njit(nogil=True, cache=True)
def _rows_affine_relu(start, stop, x, scale, shift, out):  # pragma: no cover - compiled
    """out[r, ch] = max(scale[ch] * x[r, ch] + shift[ch], 0) for the rows r in [start, stop)."""
    c = x.shape[1]
    for r in range(start, stop):
        for ch in range(c):
            y = scale[ch] * x[r, ch] + shift[ch]
            out[r, ch] = 0 if y <= 0 else y  # "<=", not ">": NaN stays NaN, as np.maximum


@njit(nogil=True, cache=True, fastmath=REASSOCIATE)
def _rows_backward_sums(first, last, dz, z, x, mean, sums_dy, sums_dy_xc):  # pragma: no cover - compiled
    """Per chunk k: sums of dy and dy * (x - mean), in float64, with dy = dz where z > 0, else 0."""
    m, c = x.shape
    chunks = sums_dy.shape[0]
    for k in range(first, last):
        start, stop = _chunk(k, chunks, m)
        for ch in range(c):
            sums_dy[k, ch] = 0.0
            sums_dy_xc[k, ch] = 0.0
        for r in range(start, stop):
            for ch in range(c):
                g = np.float64(dz[r, ch]) if z[r, ch] > 0 else 0.0
                sums_dy[k, ch] += g
                sums_dy_xc[k, ch] += g * (np.float64(x[r, ch]) - mean[ch])


@njit(nogil=True, cache=True)
def _rows_input_grad(start, stop, dz, z, x, a, b, c0, dx):  # pragma: no cover - compiled
    """dx[r, ch] = a[ch] * dy + b[ch] * x[r, ch] + c0[ch], dy = dz where z > 0, else 0."""
    c = x.shape[1]
    for r in range(start, stop):
        for ch in range(c):
            g = np.float64(dz[r, ch]) if z[r, ch] > 0 else 0.0
            dx[r, ch] = a[ch] * g + b[ch] * x[r, ch] + c0[ch]


def train_forward(x, gamma, beta, eps):
    """z, mean, biased var, inv_std of an (N, C, S) batch (see the reference)."""
    batchnorm_numba._check(x, gamma=gamma, beta=beta)
    if is_channels_last(x):
        return batchnorm_numba._rows_train_forward(x, gamma, beta, eps, affine=_rows_affine_relu)
    y, mean, var, inv_std = batchnorm_numba.train_forward(x, gamma, beta, eps)
    return relu_numba.forward(y)[0], mean, var, inv_std


def eval_forward(x, mean, inv_std, gamma, beta):
    """max(gamma * (x - mean) * inv_std + beta, 0): the unfused kernels (eval keeps nothing for backward)."""
    return relu_numba.forward(batchnorm_numba.eval_forward(x, mean, inv_std, gamma, beta))[0]


def batch_norm_relu_backward(dz, z, x, mean, inv_std, gamma, training):
    """dx, dgamma, dbeta of batch norm for the gradient dz masked by z > 0 (see the reference)."""
    batchnorm_numba._check(x, mean=mean, inv_std=inv_std, gamma=gamma)
    expect("dz", dz, shape=x.shape)
    expect("z", z, shape=x.shape)
    if not (is_channels_last(x) and z.dtype == x.dtype):
        dy = relu_numba.backward(np.asarray(dz, dtype=x.dtype), z)
        return batchnorm_numba.batch_norm_backward(dy, x, mean, inv_std, gamma, training)
    rows, dz_rows, z_rows = _rows(x, x.dtype), _rows(dz, x.dtype), _rows(z, x.dtype)
    m, c = rows.shape
    chunks = min(CHUNKS, m)
    sums_dy, sums_dy_xc = np.empty((chunks, c)), np.empty((chunks, c))
    mean, inv_std = mean.astype(np.float64), inv_std.astype(np.float64)
    parallel_for(_rows_backward_sums, chunks, dz_rows, z_rows, rows, mean, sums_dy, sums_dy_xc)
    dbeta = sums_dy.sum(axis=0)
    dgamma = sums_dy_xc.sum(axis=0) * inv_std
    a, b, c0 = batchnorm_numba.input_grad_fold(m, mean, inv_std, gamma, dgamma, dbeta, training)
    dx = buffers.empty_like(rows)
    parallel_for(_rows_input_grad, m, dz_rows, z_rows, rows, a, b, c0, dx)
    return _unrows(dx, x.shape), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


forward, backward = batchnorm_relu_reference.protocol(train_forward, eval_forward, batch_norm_relu_backward)
