"""Batch norm (+ residual) + ReLU as compiled passes: the pieces' memory traffic and storage, once.

Same formulas and signatures as ``batchnorm_relu_reference`` (read that first). Run as
pieces, batch norm writes y, the residual add reads y and r and writes a sum, ReLU reads
that and writes z; backward reads z and dz to write ReLU's gradient, which batch norm's
two passes read again. Fused:

- forward: batch norm's statistics pass, then one pass writing z = max(a*x + b [+ r], 0)
  directly (batch norm's affine kernel with the add and the ReLU in it);
- backward: the pieces' kernels (ReLU's, then batch norm's), which measured as fast as
  any masked batch-norm pass tried (see ``backward``).

The ResNet's batch norms receive a convolution's channels-last output, the layout these
kernels are written for (``batchnorm_numba``: an (N*S, C) matrix of rows, fixed chunks
added in a fixed order, so results do not depend on the thread count). A C-ordered
input (rare: the convolutions' outputs are channels last), and float64 (not the fast
path: gradient checks), run the pieces' kernels one after the other, which gives the same
numbers.

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
from tinyres.kernels.batchnorm_numba import _rows, _unrows
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


def _fits(x: np.ndarray, *others: np.ndarray | None) -> bool:
    """Whether the fused passes serve: a float32 channels-last x, the other arrays of its shape
    and dtype.

    float64 is not the fast path (it is for gradient checks): it runs the pieces' kernels,
    which give the same numbers, so the two fused passes compile for float32 only: 0.3-0.4 s
    less of a cold compile of every kernel (issue 28, benchmarks/README.md)."""
    same = all(a is None or (a.shape == x.shape and a.dtype == x.dtype) for a in others)
    return same and x.dtype == np.float32 and is_channels_last(x)


def forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
    running: tuple[np.ndarray, np.ndarray] | None = None, residual: np.ndarray | None = None,
) -> tuple[np.ndarray, Saved]:
    """(z, saved): z = relu(batch_norm(x) [+ residual]) (see the reference)."""
    batchnorm_numba._check(x, gamma=gamma, beta=beta)
    if residual is not None:
        expect("residual", residual, shape=x.shape)
    if running is not None or not _fits(x, residual):
        # Eval mode keeps nothing for a backward of its own; C-ordered input and float64 are
        # off the fast path: the pieces' kernels, one after the other (the same numbers).
        y, saved = batchnorm_numba.forward(x, gamma, beta, eps, running)
        if residual is not None:
            y = y + residual
        z, _ = relu_numba.forward(y)
        return z, Saved(*saved, z=z, residual=residual is not None)
    rows = _rows(x, x.dtype)
    mean, var, inv_std, scale, shift = batchnorm_numba._rows_coefficients(rows, gamma, beta, eps)
    out = buffers.empty_like(rows)
    if residual is None:
        parallel_for(_rows_affine_relu, rows.shape[0], rows, scale, shift, out)
    else:
        parallel_for(_rows_affine_add_relu, rows.shape[0], rows, scale, shift, out, _rows(residual, x.dtype))
    z = _unrows(out, x.shape)
    statistics = (mean.astype(x.dtype), var.astype(x.dtype), inv_std.astype(x.dtype))
    return z, Saved(x, *statistics, gamma, True, z, residual is not None)


def backward(dz: np.ndarray, saved: Saved) -> tuple[np.ndarray | None, ...]:
    """dx, dgamma, dbeta, d(residual) (None without one): ReLU's backward kernel, then batch norm's.

    The pieces' kernels, on purpose: batch norm's passes with the mask in them (reading z,
    or recomputing z > 0 from x) measured no faster than ReLU's backward pass followed by
    batch norm's unmasked ones (1.7-2.4 ms against 1.7 on (64, 16, 32, 32), one thread,
    benchmarks/README.md "Fusions"): the mask's select slows loops that are limited by
    arithmetic, not memory. With a residual the masked gradient is written anyway (it is
    the residual's gradient)."""
    g = relu_numba.backward(np.asarray(dz, dtype=saved.z.dtype), saved.z)
    dx, dgamma, dbeta = batchnorm_numba.backward(g, saved)
    return dx, dgamma, dbeta, (g if saved.residual else None)
