r"""Batch norm followed by ReLU as one op, in plain NumPy: the oracle for ``batchnorm_relu_numba``.

.. math::  z = \max(\gamma \hat{x} + \beta, 0)

is exactly ``relu(batch_norm(x))``, composed here from the two references
(``batchnorm_reference``, ``relu_reference``) so the fused op can never mean anything
else. Backward: ReLU's mask first (z > 0 exactly where the normalised value was
positive), then batch norm's backward on the masked gradient,

.. math::  \frac{\partial L}{\partial x} = \mathrm{BN}'\big(dz \cdot [z > 0]\big).

What the fusion changes is not the math but the memory: the pair stores one array
(z, which the next layer keeps anyway) instead of two (the batch norm output y, held
as ReLU's input, and z), and the compiled tier makes one pass over memory where the
pair made two (``batchnorm_relu_numba``).

>>> import numpy as np
>>> x = np.arange(8.0).reshape(2, 2, 2)
>>> z, saved = forward(x, np.ones(2), np.zeros(2), 1e-5)
>>> np.round(z[:, 0], 3)          # the channel normalised to mean 0, std 1, then ReLU
array([[0.   , 0.   ],
       [0.728, 1.213]])
>>> dx, dgamma, dbeta = backward(np.ones_like(z), saved)
>>> dbeta                          # sum of dz where z > 0: two positive values per channel
array([2., 2.])
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from tinyres.kernels import batchnorm_reference, relu_reference
from tinyres.kernels.protocol import build


class Saved(NamedTuple):
    """Batch norm's saved record (``batchnorm_reference.Saved``) plus the output z, whose
    sign is ReLU's mask. z is the op's output, alive anyway as the next layer's input."""

    x: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    training: bool
    z: np.ndarray


def train_forward(x, gamma, beta, eps):
    """relu(batch norm with the batch's statistics): z, mean, biased var, inv_std."""
    y, mean, var, inv_std = batchnorm_reference.train_forward(x, gamma, beta, eps)
    return relu_reference.forward(y)[0], mean, var, inv_std


def eval_forward(x, mean, inv_std, gamma, beta):
    """relu(batch norm with given statistics)."""
    return relu_reference.forward(batchnorm_reference.eval_forward(x, mean, inv_std, gamma, beta))[0]


def batch_norm_relu_backward(dz, z, x, mean, inv_std, gamma, training):
    """dx, dgamma, dbeta: ReLU's backward (the mask z > 0), then batch norm's."""
    dy = relu_reference.backward(dz, z)
    return batchnorm_reference.batch_norm_backward(dy, x, mean, inv_std, gamma, training)


def save(args: tuple, options: dict, result: tuple) -> tuple[np.ndarray, Saved]:
    """(z, saved): batch norm's record with z added, for the mask."""
    z, saved = result
    return z, Saved(*saved, z=z)


def read(saved: Saved) -> tuple[tuple, dict]:
    """``batch_norm_relu_backward``'s arguments after dz."""
    return (saved.z, saved.x, saved.mean, saved.inv_std, saved.gamma, saved.training), {}


def protocol(train, evaluate, array_backward):
    """The ``batch_norm_relu`` family's ``forward(x, gamma, beta, eps, running=None) -> (z, saved)``
    and ``backward(dz, saved) -> (dx, dgamma, dbeta)``: batch norm's protocol, z added."""
    array_forward = functools.partial(batchnorm_reference.normalise, train=train, evaluate=evaluate)
    return build(array_forward, array_backward, save=save, read=read)


forward, backward = protocol(train_forward, eval_forward, batch_norm_relu_backward)
