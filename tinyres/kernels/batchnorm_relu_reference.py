r"""Batch norm, an optional residual add, then ReLU, as one op, in plain NumPy: the oracle
for ``batchnorm_relu_numba``.

.. math::  z = \max(\gamma \hat{x} + \beta \;[+\, r], 0)

is exactly ``relu(batch_norm(x))`` (a conv-BN-ReLU layer), or ``relu(batch_norm(x) + r)``
(the end of a residual block, r the shortcut), composed here from the references of
the pieces (``batchnorm_reference``, ``relu_reference``) so the fused op can never mean
anything else. Backward: ReLU's mask first (z > 0 exactly where the sum was
positive), then batch norm's backward on the masked gradient; the residual's gradient
is the masked gradient itself (an addition passes it on):

.. math::  g = dz \cdot [z > 0], \qquad \frac{\partial L}{\partial x} = \mathrm{BN}'(g), \qquad
    \frac{\partial L}{\partial r} = g.

What the fusion changes is not the math but the memory: the pieces keep batch norm's
output (held as the next op's input until backward) and the sum beside z; fused, only
z is stored, which the next layer keeps anyway. The compiled tier also makes one pass
over memory where the pieces made two or three (``batchnorm_relu_numba``).

Every array is (N, C, S) as in ``batchnorm_reference``; ``residual`` has x's shape.

>>> import numpy as np
>>> x = np.arange(8.0).reshape(2, 2, 2)
>>> z, saved = forward(x, np.ones(2), np.zeros(2), 1e-5)
>>> np.round(z[:, 0], 3)          # the channel normalised to mean 0, std 1, then ReLU
array([[0.   , 0.   ],
       [0.728, 1.213]])
>>> dx, dgamma, dbeta, dr = backward(np.ones_like(z), saved)
>>> dbeta, dr                      # sum of dz where z > 0; no residual, no gradient for it
(array([2., 2.]), None)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tinyres.kernels import batchnorm_reference, relu_reference


class Saved(NamedTuple):
    """Batch norm's saved record (``batchnorm_reference.Saved``, the same fields, which its
    ``backward`` reads) plus the output z, whose sign is ReLU's mask, and whether a residual
    was added (it then gets a gradient). z is alive anyway as the next layer's input."""

    x: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    training: bool
    z: np.ndarray
    residual: bool


def forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
    running: tuple[np.ndarray, np.ndarray] | None = None, residual: np.ndarray | None = None,
) -> tuple[np.ndarray, Saved]:
    """(z, saved): z = relu(batch_norm(x) [+ residual]); ``running`` as ``batchnorm_reference.forward``."""
    y, saved = batchnorm_reference.forward(x, gamma, beta, eps, running)
    if residual is not None:
        y = y + residual
    z, _ = relu_reference.forward(y)
    return z, Saved(*saved, z=z, residual=residual is not None)


def backward(dz: np.ndarray, saved: Saved) -> tuple[np.ndarray | None, ...]:
    """dx, dgamma, dbeta, d(residual) (None without one): ReLU's mask, then batch norm's backward."""
    g = relu_reference.backward(dz, saved.z)
    dx, dgamma, dbeta = batchnorm_reference.backward(g, saved)
    return dx, dgamma, dbeta, (g if saved.residual else None)
