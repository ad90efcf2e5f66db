r"""Batch normalisation in plain NumPy: the reference the Numba kernels are tested against.

Every array is viewed as (N, C, S): batch, channels, and the spatial positions
flattened (S = H*W for images, S = 1 for a (N, C) input). Each channel c has its own
statistics over the M = N*S values it holds:

.. math::
    \mu_c = \frac{1}{M}\sum x, \qquad \sigma^2_c = \frac{1}{M}\sum (x - \mu_c)^2, \qquad
    \hat{x} = (x - \mu_c) / \sqrt{\sigma^2_c + \epsilon}, \qquad y = \gamma_c \hat{x} + \beta_c

Backward in training mode: mu and sigma depend on every x of the channel, and the
three paths through them collapse into the compact closed form

.. math::
    \frac{\partial L}{\partial x} = \frac{\gamma_c}{M \sqrt{\sigma^2_c + \epsilon}}
        \Big(M\,dy - \sum dy - \hat{x} \sum (dy\,\hat{x})\Big)

In eval mode mu and sigma are constants (the running statistics), so dx is just
gamma / sqrt(var + eps) * dy. In both modes dgamma = sum(dy * xhat), dbeta = sum(dy).

>>> import numpy as np
>>> x = np.arange(8.0).reshape(2, 2, 2)
>>> y, mean, var, inv_std = train_forward(x, np.ones(2), np.zeros(2), 1e-5)
>>> mean, var
(array([2.5, 4.5]), array([4.25, 4.25]))
>>> np.round(y.mean(axis=(0, 2)), 12) + 0.0, np.round(y.std(axis=(0, 2)), 4)
(array([0., 0.]), array([1., 1.]))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from tinyres.kernels.protocol import build

AXES = (0, 2)  # batch and spatial axes of the (N, C, S) view; the statistics reduce over them


def _per_channel(v: np.ndarray) -> np.ndarray:
    """A (C,) vector shaped (1, C, 1) so it broadcasts against (N, C, S)."""
    return v.reshape(1, -1, 1)


def train_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalise with the batch's statistics; return y, mean, biased var, 1/sqrt(var+eps)."""
    mean = x.mean(axis=AXES)
    var = ((x - _per_channel(mean)) ** 2).mean(axis=AXES)
    inv_std = 1.0 / np.sqrt(var + eps)
    y = eval_forward(x, mean, inv_std, gamma, beta)
    return y, mean, var, inv_std


def eval_forward(
    x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """y = gamma * (x - mean) * inv_std + beta, per channel."""
    xhat = (x - _per_channel(mean)) * _per_channel(inv_std)
    return (_per_channel(gamma) * xhat + _per_channel(beta)).astype(x.dtype, copy=False)


def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    training: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx, dgamma, dbeta; ``training`` says whether mean and inv_std came from this batch."""
    xhat = (x - _per_channel(mean)) * _per_channel(inv_std)
    dbeta = dy.sum(axis=AXES)
    dgamma = (dy * xhat).sum(axis=AXES)
    scale = _per_channel(gamma * inv_std)
    if training:
        m = x.shape[0] * x.shape[2]
        dx = scale / m * (m * dy - _per_channel(dbeta) - xhat * _per_channel(dgamma))
    else:
        dx = scale * dy
    return dx.astype(x.dtype, copy=False), dgamma, dbeta


class Saved(NamedTuple):
    """What ``backward`` needs, which the op keeps from forward to backward.

    After a training forward ``mean`` and ``var`` (biased) are the batch's statistics,
    which the op also folds into its running buffers; in eval mode they are the running
    ones it passed in.
    """

    x: np.ndarray  # the (N, C, S) input
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    training: bool


def normalise(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
    running: tuple[np.ndarray, np.ndarray] | None = None,
    *, train: Callable = train_forward, evaluate: Callable = eval_forward,
) -> tuple[np.ndarray, Saved]:
    """(y, saved): normalised with the batch's statistics by ``train``, or, given
    ``running`` = (mean, var), with those by ``evaluate`` (eval mode)."""
    if running is None:
        y, mean, var, inv_std = train(x, gamma, beta, eps)
    else:
        mean, var = running[0].astype(x.dtype), running[1]
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        y = evaluate(x, mean, inv_std, gamma, beta)
    return y, Saved(x, mean, var, inv_std, gamma, training=running is None)


def save(args: tuple, options: dict, result: tuple[np.ndarray, Saved]) -> tuple[np.ndarray, Saved]:
    """Batch norm's (y, saved): ``normalise`` already made the ``Saved`` record."""
    return result


def read(saved: Saved) -> tuple[tuple, dict]:
    """``batch_norm_backward``'s arguments after dy: the input, the statistics it was
    normalised with, gamma and the mode (the op, not backward, reads ``var``)."""
    return (saved.x, saved.mean, saved.inv_std, saved.gamma, saved.training), {}


def protocol(train: Callable, evaluate: Callable, array_backward: Callable) -> tuple[Callable, Callable]:
    """A batch norm module's ``forward(x, gamma, beta, eps, running=None) -> (y, saved)`` and
    ``backward(dy, saved) -> (dx, dgamma, dbeta)`` around its ``train_forward``,
    ``eval_forward`` and ``batch_norm_backward`` (``tinyres.kernels.protocol``)."""
    array_forward = functools.partial(normalise, train=train, evaluate=evaluate)
    return build(array_forward, array_backward, save=save, read=read)


forward, backward = protocol(train_forward, eval_forward, batch_norm_backward)
