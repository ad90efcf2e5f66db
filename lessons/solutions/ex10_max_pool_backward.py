"""Exercise 10 (lesson 05): max-pool backward, ties included.

Max pooling with a k x k window and stride s (no padding) outputs, for each window, its
largest element. Its backward sends each output's gradient to the one input element
that won the window, and nothing to the others. When several elements tie for the
maximum, PyTorch (and tinyres) pick the first in window order (row by row, left to
right), so each output's gradient lands on exactly one input. Windows overlap when
s < k: an element that wins several windows collects all their gradients.

Check your work: ``tinyres check ex10``.
"""

from __future__ import annotations

import numpy as np


def max_pool2d_backward(grad: np.ndarray, x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """dL/dx (x's shape (N, C, H, W)) from dL/dy = ``grad`` of shape (N, C, H_out, W_out)."""
    dx = np.zeros(x.shape, dtype=grad.dtype)
    for oh in range(grad.shape[2]):
        for ow in range(grad.shape[3]):
            window = x[:, :, oh * stride : oh * stride + kernel, ow * stride : ow * stride + kernel]
            flat = window.reshape(*window.shape[:2], -1)
            first = flat.argmax(axis=2)  # argmax returns the first maximum: the tie rule
            i, j = np.unravel_index(first, (kernel, kernel))
            for n in range(x.shape[0]):
                for c in range(x.shape[1]):
                    dx[n, c, oh * stride + i[n, c], ow * stride + j[n, c]] += grad[n, c, oh, ow]
    return dx
