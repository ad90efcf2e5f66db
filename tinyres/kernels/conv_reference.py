r"""2-d convolution written as loops: the oracle the faster tiers are tested against.

For an input ``x`` of shape (N, C_in, H, W), a weight ``w`` of shape
(C_out, C_in, kH, kW), stride ``s``, padding ``p`` and dilation ``d`` (one value per
spatial axis), output pixel (oh, ow) looks at input pixel

.. math::  h = oh \cdot s_h - p_h + i \cdot d_h, \qquad  v = ow \cdot s_w - p_w + j \cdot d_w

for every kernel offset (i, j); pixels outside the input count as zeros (the padding).
The convolution (a cross-correlation, as in every deep-learning library) is

.. math::  y[n, o, oh, ow] = b[o] + \sum_{c, i, j} w[o, c, i, j] \; x[n, c, h, v]

Each output pixel is a sum of products, so its gradient flows back along the same
pairs: ``dx[n, c, h, v] += w[o, c, i, j] * dy[n, o, oh, ow]``,
``dw[o, c, i, j] += x[n, c, h, v] * dy[n, o, oh, ow]`` and ``db[o] = sum dy[n, o, :, :]``.

The loops below run over output pixels and kernel offsets; the batch and channel
axes are done as one small matrix product per pair, to keep tests quick.

>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> w = np.ones((1, 1, 2, 2))
>>> conv2d_forward(x, w, None, stride=(2, 2), padding=(0, 0), dilation=(1, 1))
array([[[[10., 18.],
         [42., 50.]]]])
"""

from __future__ import annotations

import numpy as np

from tinyres.kernels.protocol import build
from tinyres.kernels.sizes import Pair, output_size


def _positions(x_shape, w_shape, stride: Pair, padding: Pair, dilation: Pair):
    """Yield (oh, ow, i, j, h, v) for every output pixel and kernel offset inside the input."""
    H, W = x_shape[2:]
    kH, kW = w_shape[2:]
    Ho = output_size(H, kH, stride[0], padding[0], dilation[0])
    Wo = output_size(W, kW, stride[1], padding[1], dilation[1])
    for oh in range(Ho):
        for ow in range(Wo):
            for i in range(kH):
                for j in range(kW):
                    h = oh * stride[0] - padding[0] + i * dilation[0]
                    v = ow * stride[1] - padding[1] + j * dilation[1]
                    if 0 <= h < H and 0 <= v < W:  # outside: a padding zero, adds nothing
                        yield oh, ow, i, j, h, v


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """y = conv2d(x, w) + b, one (output pixel, kernel offset) pair at a time."""
    N, _, H, W = x.shape
    C_out, _, kH, kW = w.shape
    Ho = output_size(H, kH, stride[0], padding[0], dilation[0])
    Wo = output_size(W, kW, stride[1], padding[1], dilation[1])
    y = np.zeros((N, C_out, Ho, Wo), dtype=x.dtype)
    for oh, ow, i, j, h, v in _positions(x.shape, w.shape, stride, padding, dilation):
        # (N, C_in) @ (C_in, C_out): every sample and output channel at once.
        y[:, :, oh, ow] += x[:, :, h, v] @ w[:, :, i, j].T
    if b is not None:
        y += b.reshape(1, C_out, 1, 1)
    return y


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
    """(dx, dw, db) for y = conv2d(x, w) + b, given dL/dy = ``grad``.

    ``dx`` is None when ``input_grad`` is False (an input image needs no gradient),
    ``db`` when ``bias_grad`` is False (a convolution without bias).
    """
    dx = np.zeros(x.shape, dtype=x.dtype)
    dw = np.zeros(w.shape, dtype=w.dtype)
    for oh, ow, i, j, h, v in _positions(x.shape, w.shape, stride, padding, dilation):
        g = grad[:, :, oh, ow]  # (N, C_out)
        dx[:, :, h, v] += g @ w[:, :, i, j]  # (N, C_out) @ (C_out, C_in)
        dw[:, :, i, j] += g.T @ x[:, :, h, v]  # (C_out, N) @ (N, C_in)
    db = grad.sum(axis=(0, 2, 3)) if bias_grad else None
    return (dx if input_grad else None), dw, db


def save(args: tuple, options: dict, y: np.ndarray) -> tuple[np.ndarray, tuple]:
    """A convolution's (y, saved): x and w as the kernels read them (in the layout
    ``prepare`` gave x), the geometry and the options (Winograd's tile m); not the bias."""
    x, w, _, stride, padding, dilation = args
    return y, (x, w, stride, padding, dilation, options)


def read(saved: tuple) -> tuple[tuple, dict]:
    """``conv2d_backward``'s arguments after the gradient, and the options, from ``save``'s."""
    *arguments, options = saved
    return tuple(arguments), options


def protocol(array_forward, array_backward, prepare=None):
    """A convolution module's ``forward(x, w, b, stride, padding, dilation) -> (y, saved)``
    and ``backward(grad, saved, input_grad, bias_grad) -> (dx | None, dw, db | None)``
    around its ``conv2d_forward``/``conv2d_backward`` (``tinyres.kernels.protocol``)."""
    return build(array_forward, array_backward, save=save, read=read, prepare=prepare)


forward, backward = protocol(conv2d_forward, conv2d_backward)
