r"""Exercise 17 (lesson 05): dL/dx of a strided convolution, as a convolution of dL/dy.

Section 2 derives dL/dx of a convolution with stride 1: dL/dy, padded by k - 1 - p,
correlated with the kernel flipped in both spatial axes and with its two channel axes
swapped. Build the strided case yourself, without a loop over output pixels:

- with stride s, output pixel oh reads input rows oh*s - p + i: spread dL/dy out so that
  its rows land s apart (s - 1 zeros between neighbours), and the stride-1 recipe applies;
- when (H + 2p - k) is not a multiple of s, the last input rows and columns were read by
  no window: their gradient is 0, and the result must still have x's shape.

grad is (N, C_out, H_out, W_out), w is (C_out, C_in, k, k); return dx of ``x_shape``
(N, C_in, H, W), in grad's dtype.

Check your work: ``tinyres check ex17``.
"""

from __future__ import annotations

import numpy as np


def conv2d_input_gradient(
    grad: np.ndarray, w: np.ndarray, x_shape: tuple[int, int, int, int], stride: int, padding: int
) -> np.ndarray:
    """dL/dx for y = conv2d(x, w, stride, padding), from dL/dy = ``grad``; x_shape's shape."""
    N, _, H, W = x_shape
    k = w.shape[2]
    Ho, Wo = grad.shape[2:]
    # Dilate: the gradient of output pixel oh sits at row oh * stride.
    spread = np.zeros((N, grad.shape[1], (Ho - 1) * stride + 1, (Wo - 1) * stride + 1), dtype=grad.dtype)
    spread[:, :, ::stride, ::stride] = grad
    # Pad by k - 1 - p on the top and left; on the bottom and right also by the rows no window read.
    extra_h = H + 2 * padding - k - (Ho - 1) * stride
    extra_w = W + 2 * padding - k - (Wo - 1) * stride
    q = k - 1 - padding
    spread = np.pad(spread, ((0, 0), (0, 0), (q, q + extra_h), (q, q + extra_w)))
    flipped = w[:, :, ::-1, ::-1]  # (C_out, C_in, k, k), flipped in space
    windows = np.lib.stride_tricks.sliding_window_view(spread, (k, k), axis=(2, 3))  # (N, C_out, H, W, k, k)
    return np.einsum("nohwij,ocij->nchw", windows, flipped).astype(grad.dtype, copy=False)
