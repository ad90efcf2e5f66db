r"""Exercise 8 (lesson 05): 2-d convolution with loops, forward and backward.

x is (N, C_in, H, W), w is (C_out, C_in, k, k), b is (C_out,); stride s and padding p
are the same along both axes. Output pixel (oh, ow) reads the input pixel

.. math::  h = oh \cdot s - p + i, \qquad v = ow \cdot s - p + j

for kernel offset (i, j); pixels outside the input are the padding's zeros. The output
has H_out = (H + 2p - k) // s + 1 rows (and W_out columns likewise) and

.. math::  y[n, o, oh, ow] = b[o] + \sum_{c, i, j} w[o, c, i, j]\, x[n, c, h, v]

(a cross-correlation: the kernel is not flipped). Every product sends its gradient back
along the same pair: dx[n, c, h, v] += w[o, c, i, j] dy[n, o, oh, ow],
dw[o, c, i, j] += x[n, c, h, v] dy[n, o, oh, ow], and db[o] = sum of dy[:, o].

Check your work: ``tinyres check ex08``.
"""

from __future__ import annotations

import numpy as np


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """y of shape (N, C_out, H_out, W_out). Loop over output pixels and kernel offsets."""
    N, _, H, W = x.shape
    C_out, _, k, _ = w.shape
    Ho, Wo = (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1
    y = np.zeros((N, C_out, Ho, Wo), dtype=x.dtype)  # float32 in, float32 out
    for oh in range(Ho):
        for ow in range(Wo):
            for i in range(k):
                for j in range(k):
                    h, v = oh * stride - padding + i, ow * stride - padding + j
                    if 0 <= h < H and 0 <= v < W:
                        y[:, :, oh, ow] += x[:, :, h, v] @ w[:, :, i, j].T
    return y + b.reshape(1, C_out, 1, 1)


def conv2d_backward(
    grad: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db) of x's, w's and (C_out,) shapes, from dL/dy = ``grad``."""
    _, _, H, W = x.shape
    k = w.shape[2]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for oh in range(grad.shape[2]):
        for ow in range(grad.shape[3]):
            for i in range(k):
                for j in range(k):
                    h, v = oh * stride - padding + i, ow * stride - padding + j
                    if 0 <= h < H and 0 <= v < W:
                        g = grad[:, :, oh, ow]  # (N, C_out)
                        dx[:, :, h, v] += g @ w[:, :, i, j]
                        dw[:, :, i, j] += g.T @ x[:, :, h, v]
    return dx, dw, grad.sum(axis=(0, 2, 3))
