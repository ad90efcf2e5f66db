r"""Pooling in NumPy: the reference the Numba kernels are tested against.

Inputs are (N, C, H, W). A window of ``kernel`` = (kh, kw) taps, spaced ``dilation``
apart, slides by ``stride`` over the input padded by ``padding`` on each side, so

.. math::  H_{out} = \lfloor (H + 2p - d(k - 1) - 1) / s \rfloor + 1

The loops run over the kh*kw taps of the window; each tap is one strided slice of
the padded input, holding that tap's value for every output position at once.

- max pooling pads with -inf and remembers, per output, the flat index (row * W +
  col) of the winner in the unpadded input. A later tap wins only if strictly
  greater, so a tie goes to the first tap in window order and the gradient goes to
  that one element. A window of padding only keeps index -1 and passes no gradient.
  A NaN always wins (so a window holding one gives NaN, and the last NaN in window
  order gets the gradient), as in PyTorch: ``NaN > x`` is false, so without that
  rule a NaN would silently drop out of the maximum.
- average pooling pads with 0 and always divides by kh*kw (PyTorch's
  ``count_include_pad=True``); its backward spreads grad/(kh*kw) over the window.

>>> import numpy as np
>>> x = np.array([[[[4.0, 1.0, 4.0], [0.0, 4.0, 2.0], [1.0, 1.0, 1.0]]]])
>>> out, index = max_pool2d_forward(x, (2, 2), (1, 1), (0, 0), (1, 1))
>>> index[0, 0]   # ties go to the first 4 of each window; element 4 wins two windows
array([[0, 2],
       [4, 4]])
>>> avg_pool2d_forward(x, (3, 3), (1, 1), (0, 0))[0, 0]
array([[2.]])
>>> max_pool2d_forward(np.array([[[[np.nan, 1.0], [2.0, 3.0]]]]), (2, 2), (1, 1), (0, 0), (1, 1))
(array([[[[nan]]]]), array([[[[0]]]]))
"""

from __future__ import annotations

import numpy as np

from tinyres.kernels.sizes import Pair, output_size


def _tap(xp: np.ndarray, i: int, j: int, out_hw: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """The values of window tap (i, j) for every output position: a strided view."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return xp[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]


def _pad(x: np.ndarray, padding: Pair, value: float) -> np.ndarray:
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def max_pool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[np.ndarray, np.ndarray]:
    """The window maxima and the flat index (into H*W) of each winner."""
    n, c, h, w = x.shape
    out_hw = tuple(output_size(*a) for a in zip((h, w), kernel, stride, padding, dilation))
    xp = _pad(x, padding, -np.inf)
    out = np.full((n, c, *out_hw), -np.inf, dtype=x.dtype)
    index = np.full((n, c, *out_hw), -1, dtype=np.int64)
    for i in range(kernel[0]):
        rows = np.arange(out_hw[0]) * stride[0] + i * dilation[0] - padding[0]
        for j in range(kernel[1]):
            cols = np.arange(out_hw[1]) * stride[1] + j * dilation[1] - padding[1]
            tap = _tap(xp, i, j, out_hw, stride, dilation)
            better = (tap > out) | np.isnan(tap)
            out = np.where(better, tap, out)
            index = np.where(better, rows[:, None] * w + cols[None, :], index)
    return out, index


def max_pool2d_backward(grad: np.ndarray, index: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Add each output's gradient to the input element that won its window."""
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w), dtype=grad.dtype)
    plane = np.broadcast_to(np.arange(n * c).reshape(n, c, 1, 1), index.shape)
    won = index >= 0
    # add.at, not +=: overlapping windows can pick the same element more than once.
    np.add.at(dx, (plane[won], index[won]), grad[won])
    return dx.reshape(x_shape)


def avg_pool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """Window means, zero padding included in the count."""
    n, c, h, w = x.shape
    out_hw = tuple(output_size(*a) for a in zip((h, w), kernel, stride, padding))
    xp = _pad(x, padding, 0.0)
    total = np.zeros((n, c, *out_hw), dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            total += _tap(xp, i, j, out_hw, stride, (1, 1))
    return total / np.asarray(kernel[0] * kernel[1], dtype=x.dtype)


def avg_pool2d_backward(
    grad: np.ndarray, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair
) -> np.ndarray:
    """Every tap of a window gets grad / (kh*kw); padding's share is dropped."""
    (ph, pw), (h, w) = padding, x_shape[2:]
    dxp = np.zeros((*x_shape[:2], h + 2 * ph, w + 2 * pw), dtype=grad.dtype)
    share = grad / np.asarray(kernel[0] * kernel[1], dtype=grad.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            # A tap's slice holds distinct elements, so += is safe within one tap.
            _tap(dxp, i, j, grad.shape[2:], stride, (1, 1))[...] += share
    return dxp[:, :, ph : ph + h, pw : pw + w]


def adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: output i covers [floor(i*size/out), ceil((i+1)*size/out))."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d_forward(x: np.ndarray, out_hw: Pair) -> np.ndarray:
    """The mean of each adaptive window."""
    out = np.empty((*x.shape[:2], *out_hw), dtype=x.dtype)
    for a, (r0, r1) in enumerate(adaptive_bounds(x.shape[2], out_hw[0])):
        for b, (c0, c1) in enumerate(adaptive_bounds(x.shape[3], out_hw[1])):
            out[:, :, a, b] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


def adaptive_avg_pool2d_backward(grad: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Each window's elements get grad / (window area); windows may overlap."""
    dx = np.zeros(x_shape, dtype=grad.dtype)
    for a, (r0, r1) in enumerate(adaptive_bounds(x_shape[2], grad.shape[2])):
        for b, (c0, c1) in enumerate(adaptive_bounds(x_shape[3], grad.shape[3])):
            area = (r1 - r0) * (c1 - c0)
            dx[:, :, r0:r1, c0:c1] += (grad[:, :, a, b] / area)[:, :, None, None]
    return dx
