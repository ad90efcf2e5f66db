"""Exercise 9 (lesson 05): max-pool backward, ties included.

Max pooling with a k x k window and stride s (no padding) outputs, for each window, its
largest element. Its backward sends each output's gradient to the one input element
that won the window, and nothing to the others. When several elements tie for the
maximum, PyTorch (and tinyres) pick the first in window order (row by row, left to
right), so each output's gradient lands on exactly one input. Windows overlap when
s < k: an element that wins several windows collects all their gradients.

Check your work: ``tinyres check ex09``.
"""

from __future__ import annotations

import numpy as np


def max_pool2d_backward(grad: np.ndarray, x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """dL/dx (x's shape (N, C, H, W)) from dL/dy = ``grad`` of shape (N, C, H_out, W_out)."""
    raise NotImplementedError
