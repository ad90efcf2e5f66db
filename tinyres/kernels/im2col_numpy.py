r"""2-d convolution as one matrix product: im2col, GEMM, col2im, in vectorised NumPy.

im2col ("image to columns") copies every receptive field of the padded input into a
row of a matrix, so that the convolution becomes a single matrix product:

.. math::  Y_{(n, oh, ow), o} = \sum_{(c, i, j)} \mathrm{cols}_{(n, oh, ow), (c, i, j)} \; W_{o, (c, i, j)}

Backward is two more products and the inverse of im2col:

- dW = dY^T @ cols (every receptive field, weighted by its output's gradient);
- dcols = dY @ W, and col2im adds each row of dcols back onto the input pixels it
  was copied from (a pixel in k overlapping fields collects k contributions).

Here im2col is a strided *view* (``sliding_window_view``, no copy) that
``np.tensordot`` turns into the matrix and multiplies; col2im is one strided
slice-add per kernel offset (i, j).

>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
>>> from tinyres.kernels import conv_reference
>>> args = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2))
>>> np.allclose(conv2d_forward(x, w, None, **args), conv_reference.conv2d_forward(x, w, None, **args))
True
"""

from __future__ import annotations

import numpy as np

from tinyres.kernels import conv_reference
from tinyres.kernels.sizes import Pair


def im2col(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """The receptive fields of ``x`` as a view of shape (N, C, Ho, Wo, kH, kW).

    ``cols[n, c, oh, ow, i, j] = xpad[n, c, oh*s_h + i*d_h, ow*s_w + j*d_w]``.
    """
    (kH, kW), (sH, sW), (pH, pW), (dH, dW) = kernel, stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (pH, pH), (pW, pW)))
    span = (dH * (kH - 1) + 1, dW * (kW - 1) + 1)  # the dilated kernel's extent
    windows = np.lib.stride_tricks.sliding_window_view(xp, span, axis=(2, 3))
    # Every window start (then keep every stride-th), every pixel of it (then every
    # dilation-th): (N, C, Hp - span + 1, ..., span_h, span_w) -> (N, C, Ho, Wo, kH, kW).
    return windows[:, :, ::sH, ::sW, ::dH, ::dW]


def col2im(
    dcols: np.ndarray, x_shape: tuple[int, ...], stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """Add ``dcols`` of shape (N, C, kH, kW, Ho, Wo) back onto an (N, C, H, W) image."""
    N, C, H, W = x_shape
    _, _, kH, kW, Ho, Wo = dcols.shape
    (sH, sW), (pH, pW), (dH, dW) = stride, padding, dilation
    dxp = np.zeros((N, C, H + 2 * pH, W + 2 * pW), dtype=dcols.dtype)
    for i in range(kH):
        for j in range(kW):
            # Kernel offset (i, j) of output pixel (oh, ow) read xpad[i*dH + oh*sH, j*dW + ow*sW].
            rows = slice(i * dH, i * dH + sH * (Ho - 1) + 1, sH)
            columns = slice(j * dW, j * dW + sW * (Wo - 1) + 1, sW)
            dxp[:, :, rows, columns] += dcols[:, :, i, j]
    return dxp[:, :, pH : pH + H, pW : pW + W]


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """y = conv2d(x, w) + b as im2col followed by one matrix product."""
    cols = im2col(x, w.shape[2:], stride, padding, dilation)
    # Contract (C, kH, kW) of the fields with the same axes of w: (N, Ho, Wo, C_out).
    y = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))
    if b is not None:
        y += b
    return y.transpose(0, 3, 1, 2)


def conv2d_backward(
    grad: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    input_grad: bool = True,
    bias_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dw, db): dW = dY^T @ cols, dX = col2im(dY @ W), db = sum of dY."""
    cols = im2col(x, w.shape[2:], stride, padding, dilation)
    # Fields first: (C, kH, kW, C_out). BLAS splits a product over the rows of its result,
    # and C_out rows with a huge inner dimension (N*Ho*Wo) leave its threads fighting.
    dw = np.tensordot(cols, grad, axes=([0, 2, 3], [0, 2, 3])).transpose(3, 0, 1, 2)
    db = grad.sum(axis=(0, 2, 3)) if bias_grad else None
    if not input_grad:
        return None, dw, db
    dcols = np.tensordot(w, grad, axes=([0], [1]))  # (C, kH, kW, N, Ho, Wo)
    dx = col2im(dcols.transpose(3, 0, 1, 2, 4, 5), x.shape, stride, padding, dilation)
    return dx, dw, db



forward, backward = conv_reference.protocol(conv2d_forward, conv2d_backward)
