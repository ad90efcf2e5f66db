r"""Exercise 11 (lesson 06): batch-norm backward in training mode, in the compact form.

For x of shape (N, C, H, W), each channel c is normalised with the mean and the biased
variance of its M = N * H * W values:

.. math::  \hat{x} = (x - \mu_c) / \sqrt{\sigma_c^2 + \epsilon}, \qquad y = \gamma_c \hat{x} + \beta_c

mu and sigma^2 depend on every x of the channel, so dL/dx has three paths: the direct
one through x - mu, one through mu, one through sigma^2. Lesson 6 section 2 walks the
first steps; collect the terms yourself, per channel, with the biased variance and eps
inside the square root. dgamma and dbeta are per channel too. Two consequences you can
check before running the grader: dx sums to 0 over each channel (shifting a channel
changes nothing after normalising), and so does dx * xhat (nor does scaling it).

Check your work: ``tinyres check ex11``.
"""

from __future__ import annotations

import numpy as np


def batchnorm_backward(
    dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx (N, C, H, W), dgamma (C,), dbeta (C,)) for training-mode batch norm."""
    raise NotImplementedError
