r"""Exercise 4 (lesson 02): the ``MatMul`` function's backward.

For X of shape (n, k) and Y of shape (k, m), Z = X @ Y has shape (n, m) and

.. math::  \frac{\partial L}{\partial X} = G\,Y^\top \ (n, k), \qquad
           \frac{\partial L}{\partial Y} = X^\top G \ (k, m)

where G = dL/dZ. Each gradient has the shape of its input: the shapes tell you where
the transposes go.

Check your work: ``tinyres check ex04``.
"""

from __future__ import annotations

import numpy as np

from tinyres.engine import Function


class MatMul(Function):
    """Z = X @ Y for 2-d X (n, k) and Y (k, m)."""

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return x @ y, keeping x and y for the backward."""
        self.x, self.y = x, y
        return x @ y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (dL/dX, dL/dY) from G = ``grad`` of shape (n, m)."""
        return grad @ self.y.T, self.x.T @ grad
