r"""Exercise 2 (lesson 01): the ``Tanh`` function, forward and backward, in the real engine.

.. math::  z = \tanh x, \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial z}\,(1 - z^2)

``Tanh.apply(t)`` (inherited from ``Function``) calls your ``forward`` on the array
behind ``t`` and records the call; ``backward`` gets dL/dz with z's shape and returns a
one-element tuple holding dL/dx with x's shape.

Check your work: ``tinyres check ex02``.
"""

from __future__ import annotations

import numpy as np

from tinyres.engine import Function


class Tanh(Function):
    """z = tanh(x), elementwise, for an array x of any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return tanh(x); keep on ``self`` what backward needs (the output is enough)."""
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        """Return (dL/dx,) from dL/dz = ``grad``: grad * (1 - z^2)."""
        raise NotImplementedError
