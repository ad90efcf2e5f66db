"""Batch norm (+ residual) + ReLU as compiled passes: the pieces' memory traffic and storage, once.

Same formulas and signatures as ``batchnorm_relu_reference`` (read that first). Run as
pieces, batch norm writes y, the residual add reads y and r and writes a sum, ReLU reads
that and writes z; backward reads z and dz to write ReLU's gradient, which batch norm's
two passes read again. Fused:

- forward: batch norm's statistics pass, then one pass writing z = max(a*x + b [+ r], 0)
  directly (batch norm's affine kernel with the add and the ReLU in it);
- backward: batch norm's first pass reads dz and z and applies the mask as it sums
  (with a residual it also writes the masked gradient g, which is the residual's
  gradient and what the second pass reads; without one the second pass masks again).

The ResNet's batch norms receive a convolution's channels-last output, the layout these
kernels are written for (``batchnorm_numba``: an (N*S, C) matrix of rows, fixed chunks
added in a fixed order, so results do not depend on the thread count). A C-ordered
input (rare: the convolutions' outputs are channels last) runs the pieces' kernels one
after the other, which gives the same numbers.

z is computed in x's dtype with the same roundings as the pieces (a*x + b, then + r,
then the ReLU; no fused multiply-add), so the fused output equals the pieces' bit for
bit. NaN propagates, as in ``torch.relu``.

>>> import numpy as np
>>> from tinyres.kernels import batchnorm_relu_reference
>>> x = np.random.default_rng(0).standard_normal((4, 5, 3, 3)).astype(np.float32)
>>> x = x.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2).reshape(4, 5, 9)  # channels last
>>> g, b, r = np.full(5, 2.0, np.float32), np.full(5, 0.5, np.float32), x[::-1]
>>> ours, _ = forward(x, g, b, 1e-5, residual=r)
>>> bool(np.allclose(ours, batchnorm_relu_reference.forward(x, g, b, 1e-5, residual=r)[0], atol=1e-6))
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

Saved = batchnorm_relu_reference.Saved


@njit(nogil=True, cache=True)
def _rows_affine_relu(start, stop, x, scale, shift, out):  # pragma: no cover - compiled
    """out[r, ch] = max(scale[ch] * x[r, ch] + shift[ch], 0) for the rows r in [start, stop)."""
    c = x.shape[1]
    for r in range(start, stop):
        for ch in range(c):
            y = scale[ch] * x[r, ch] + shift[ch]
            out[r, ch] = 0 if y <= 0 else y  # "<=", not ">": NaN stays NaN, as np.maximum


@njit(nogil=True, cache=True)
def _rows_affine_add_relu(start, stop, x, scale, shift, out, residual):  # pragma: no cover - compiled
    """out[r, ch] = max(scale[ch] * x[r, ch] + shift[ch] + residual[r, ch], 0)."""
    c = x.shape[1]
    for r in range(start, stop):
        for ch in range(c):
            y = scale[ch] * x[r, ch] + shift[ch]
            y = y + residual[r, ch]  # rounded after the affine step, as the pieces round
            out[r, ch] = 0 if y <= 0 else y


@njit(nogil=True, cache=True, fastmath=REASSOCIATE)
def _rows_masked_sums(first, last, dz, z, x, mean, sums_dy, sums_dy_xc, g):  # pragma: no cover
    """Per chunk k: sums of g and g * (x - mean) in float64, g = dz where z > 0, else 0;
    g itself is written when it has rows (a residual's gradient), not when it is empty."""
    m, c = x.shape
    chunks = sums_dy.shape[0]
    write = g.shape[0] == m
    for k in range(first, last):
        start, stop = _chunk(k, chunks, m)
        for ch in range(c):
            sums_dy[k, ch] = 0.0
            sums_dy_xc[k, ch] = 0.0
        for r in range(start, stop):
            for ch in range(c):
                masked = dz[r, ch] if z[r, ch] > 0 else 0
                if write:
                    g[r, ch] = masked
                sums_dy[k, ch] += masked
                sums_dy_xc[k, ch] += masked * (np.float64(x[r, ch]) - mean[ch])


@njit(nogil=True, cache=True)
def _rows_masked_input_grad(start, stop, dz, z, x, a, b, c0, dx):  # pragma: no cover - compiled
    """dx[r, ch] = a[ch] * g + b[ch] * x[r, ch] + c0[ch], g = dz where z > 0, else 0."""
    c = x.shape[1]
    for r in range(start, stop):
        for ch in range(c):
            g = np.float64(dz[r, ch]) if z[r, ch] > 0 else 0.0
            dx[r, ch] = a[ch] * g + b[ch] * x[r, ch] + c0[ch]


def _fits(x: np.ndarray, *others: np.ndarray | None) -> bool:
    """Whether the fused passes serve: a channels-last x, the other arrays of its shape and dtype."""
    same = all(a is None or (a.shape == x.shape and a.dtype == x.dtype) for a in others)
    return same and is_channels_last(x)


def forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
    running: tuple[np.ndarray, np.ndarray] | None = None, residual: np.ndarray | None = None,
) -> tuple[np.ndarray, Saved]:
    """(z, saved): z = relu(batch_norm(x) [+ residual]) (see the reference)."""
    batchnorm_numba._check(x, gamma=gamma, beta=beta)
    if residual is not None:
        expect("residual", residual, shape=x.shape)
    if running is not None or not _fits(x, residual):
        # Eval mode keeps nothing for a backward of its own and C-ordered input is off the
        # ResNet's path: the pieces' kernels, one after the other (the same numbers).
        y, saved = batchnorm_numba.forward(x, gamma, beta, eps, running)
        if residual is not None:
            y = y + residual
        z, _ = relu_numba.forward(y)
        return z, Saved(*saved, z=z, residual=residual is not None)
    extra = () if residual is None else (_rows(residual, x.dtype),)
    affine = _rows_affine_relu if residual is None else _rows_affine_add_relu
    z, mean, var, inv_std = batchnorm_numba._rows_train_forward(x, gamma, beta, eps, affine, extra)
    return z, Saved(x, mean, var, inv_std, gamma, True, z, residual is not None)


def backward(dz: np.ndarray, saved: Saved) -> tuple[np.ndarray | None, ...]:
    """dx, dgamma, dbeta, d(residual) (None without one): batch norm's backward of dz masked by z > 0."""
    x, z = saved.x, saved.z
    expect("dz", dz, shape=x.shape)
    if not _fits(x, z):
        g = relu_numba.backward(np.asarray(dz, dtype=z.dtype), z)
        dx, dgamma, dbeta = batchnorm_numba.backward(g, saved)
        return dx, dgamma, dbeta, (g if saved.residual else None)
    rows, dz_rows, z_rows = _rows(x, x.dtype), _rows(dz, x.dtype), _rows(z, x.dtype)
    m, c = rows.shape
    chunks = min(CHUNKS, m)
    sums_dy, sums_dy_xc = np.empty((chunks, c)), np.empty((chunks, c))
    g = buffers.empty_like(rows) if saved.residual else np.empty((0, c), x.dtype)
    mean, inv_std = saved.mean.astype(np.float64), saved.inv_std.astype(np.float64)
    parallel_for(_rows_masked_sums, chunks, dz_rows, z_rows, rows, mean, sums_dy, sums_dy_xc, g)
    dbeta = sums_dy.sum(axis=0)
    dgamma = sums_dy_xc.sum(axis=0) * inv_std
    a, b, c0 = batchnorm_numba.input_grad_fold(m, mean, inv_std, saved.gamma, dgamma, dbeta, saved.training)
    dx = buffers.empty_like(rows)
    if saved.residual:  # g is written: one array less to read than dz and z
        parallel_for(batchnorm_numba._rows_input_grad, m, g, rows, a, b, c0, dx)
    else:
        parallel_for(_rows_masked_input_grad, m, dz_rows, z_rows, rows, a, b, c0, dx)
    dr = _unrows(g, x.shape) if saved.residual else None
    return _unrows(dx, x.shape), dgamma.astype(x.dtype), dbeta.astype(x.dtype), dr
