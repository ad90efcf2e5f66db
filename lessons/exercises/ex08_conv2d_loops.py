r"""Exercise 8 (lesson 05): 2-d convolution with loops, forward and backward.

x is (N, C_in, H, W), w is (C_out, C_in, k, k), b is (C_out,); stride s and padding p
are the same along both axes. Output pixel (oh, ow) reads the input pixel

.. math::  h = oh \cdot s - p + i, \qquad v = ow \cdot s - p + j

for kernel offset (i, j); pixels outside the input are the padding's zeros. The output
has H_out = (H + 2p - k) // s + 1 rows (and W_out columns likewise) and

.. math::  y[n, o, oh, ow] = b[o] + \sum_{c, i, j} w[o, c, i, j]\, x[n, c, h, v]

(a cross-correlation: the kernel is not flipped). For the backward, ask of each product
in that sum which three arrays it touches and what its derivative with respect to each
is (lesson 5 section 2 derives dL/dx); keep the input's dtype.

Check your work: ``tinyres check ex08``.
"""

from __future__ import annotations

import numpy as np


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """y of shape (N, C_out, H_out, W_out). Loop over output pixels and kernel offsets."""
    raise NotImplementedError


def conv2d_backward(
    grad: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db) of x's, w's and (C_out,) shapes, from dL/dy = ``grad``."""
    raise NotImplementedError
