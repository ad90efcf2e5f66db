r"""Exercise 5 (lesson 03): the numeric gradient behind every gradient check.

For a function f from arrays to arrays and an upstream gradient v of f(x)'s shape,
the scalar L(x) = sum(v * f(x)) has the gradient the backward pass computes. Central
differences estimate it one element at a time:

.. math::  \frac{\partial L}{\partial x_j} \approx \frac{L(x + \epsilon e_j) - L(x - \epsilon e_j)}{2\epsilon}

with an error of order eps^2 (a one-sided difference is only of order eps).

Check your work: ``tinyres check ex05``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, upstream: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """dL/dx for L = sum(upstream * f(x)), by central differences; x's shape.

    Perturb one element of ``x`` at a time (in place, or on a copy) and leave ``x`` as
    you found it.
    """
    x = x.copy()
    grad = np.zeros(x.shape, dtype=x.dtype)
    for j in np.ndindex(x.shape):
        original = x[j]
        x[j] = original + eps
        plus = np.sum(upstream * f(x))
        x[j] = original - eps
        minus = np.sum(upstream * f(x))
        x[j] = original
        grad[j] = (plus - minus) / (2 * eps)
    return grad
