r"""Planted mistake for ex08 (ex08_im2col.py): the grader must fail it.

col2im overwrites instead of adding: a pixel shared by overlapping windows keeps only
the last window's gradient.

Exercise 8 (lesson 05): im2col and col2im, the convolution as one matrix product.

im2col copies every receptive field of the zero-padded input into one row of a matrix:
for x of shape (N, C, H, W), a k x k kernel, stride s and padding p,

    cols[(n, oh, ow), (c, i, j)] = xpad[n, c, oh*s + i, ow*s + j]

a matrix of shape (N * H_out * W_out, C * k * k), rows ordered n, then oh, then ow,
columns c, then i, then j (so ``w.reshape(C_out, -1)`` lines up with them). The
convolution is then ``cols @ w.reshape(C_out, -1).T``.

col2im is its adjoint (the backward): it *adds* each row back onto the pixels it was
copied from, so a pixel in several receptive fields collects every contribution, and
drops what lands on the padding. For all x and c:
<im2col(x), c> = <x, col2im(c)>.

Check your work: ``tinyres check ex08``.
"""

from __future__ import annotations

import numpy as np

# The property the grader must fail (tests/test_grading.py checks that it does):
EXPECTED_FAILURE = "adjoint of im2col"


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """The (N * H_out * W_out, C * k * k) matrix of receptive fields."""
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho, Wo = (H + 2 * padding - kernel) // stride + 1, (W + 2 * padding - kernel) // stride + 1
    cols = np.empty((N, Ho, Wo, C, kernel, kernel), dtype=x.dtype)
    for oh in range(Ho):
        for ow in range(Wo):
            rows, columns = slice(oh * stride, oh * stride + kernel), slice(ow * stride, ow * stride + kernel)
            cols[:, oh, ow] = xp[:, :, rows, columns]
    return cols.reshape(N * Ho * Wo, C * kernel * kernel)


def col2im(
    cols: np.ndarray, x_shape: tuple[int, int, int, int], kernel: int, stride: int, padding: int
) -> np.ndarray:
    """Add the rows of ``cols`` back onto an image of ``x_shape``; return (N, C, H, W)."""
    N, C, H, W = x_shape
    Ho, Wo = (H + 2 * padding - kernel) // stride + 1, (W + 2 * padding - kernel) // stride + 1
    fields = cols.reshape(N, Ho, Wo, C, kernel, kernel)
    dxp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    for oh in range(Ho):
        for ow in range(Wo):
            rows, columns = slice(oh * stride, oh * stride + kernel), slice(ow * stride, ow * stride + kernel)
            dxp[:, :, rows, columns] = fields[:, oh, ow]  # MISTAKE: overwrites instead of adding
    return dxp[:, :, padding : padding + H, padding : padding + W]
