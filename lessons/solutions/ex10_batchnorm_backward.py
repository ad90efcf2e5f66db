r"""Exercise 10 (lesson 06): batch-norm backward in training mode, in the compact form.

For x of shape (N, C, H, W), each channel c is normalised with the mean and the biased
variance of its M = N * H * W values:

.. math::  \hat{x} = (x - \mu_c) / \sqrt{\sigma_c^2 + \epsilon}, \qquad y = \gamma_c \hat{x} + \beta_c

mu and sigma depend on every x of the channel, and the three paths through them
collapse into

.. math::  \frac{\partial L}{\partial x} = \frac{\gamma_c}{M\sqrt{\sigma_c^2 + \epsilon}}
           \Big(M\,dy - \sum dy - \hat{x} \sum (dy\,\hat{x})\Big)

with the sums over the channel's values; dgamma = sum(dy * xhat) and dbeta = sum(dy),
per channel. Two consequences you can check: dx sums to 0 over each channel (shifting
a channel changes nothing after normalising), and so does dx * xhat (nor does scaling it).

Check your work: ``tinyres check ex10``.
"""

from __future__ import annotations

import numpy as np


def batchnorm_backward(
    dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx (N, C, H, W), dgamma (C,), dbeta (C,)) for training-mode batch norm."""
    axes = (0, 2, 3)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    xhat = (x - mean) * inv_std
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    per_channel = (1, -1, 1, 1)
    dx = gamma.reshape(per_channel) * inv_std / m * (
        m * dy - dbeta.reshape(per_channel) - xhat * dgamma.reshape(per_channel)
    )
    return dx, dgamma, dbeta
