r"""``unfold``: every sliding window of an image as a column, differentiable (PyTorch's ``F.unfold``).

For an (N, C, H, W) input and a kH x kW window, the output is (N, C*kH*kW, L): column
l holds the window at output position l (L = Ho*Wo positions, row-major), its C*kH*kW
numbers in (c, i, j) order. Its backward adds each column back onto the pixels it was
read from (col2im, ``tinyres.kernels.im2col_numpy``): the two are adjoint.

A window op is then a reduction of the columns, with no backward of its own: an average
pool is a mean over each window's kH*kW numbers, a max pool their max, a convolution a
matrix product with the weights.

>>> import tinyres as tr
>>> from tinyres.nn import functional as F
>>> x = tr.arange(32.0).reshape(2, 1, 4, 4)
>>> cols = unfold(x, 2, stride=2)                                  # (2, 1*2*2, 2*2)
>>> pooled = cols.reshape(2, 1, 4, 4).mean(dim=2).reshape(2, 1, 2, 2)
>>> bool((pooled.numpy() == F.avg_pool2d(x, 2).numpy()).all())
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Function, Tensor
from tinyres.kernels.im2col_numpy import col2im, im2col
from tinyres.kernels.sizes import Pair
from tinyres.ops.validate import as_pair, check_float, check_ndim, check_window_fits


class Im2Col(Function):
    """z[n, (c, i, j), (oh, ow)] = xpad[n, c, oh*sH + i*dH, ow*sW + j*dW];  backward is col2im."""

    def forward(
        self, x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
    ) -> np.ndarray:
        self.x_shape, self.options = x.shape, (stride, padding, dilation)
        windows = im2col(x, kernel, stride, padding, dilation)  # a view (N, C, Ho, Wo, kH, kW)
        N, C, Ho, Wo, kH, kW = windows.shape
        self.windows_shape = (N, C, kH, kW, Ho, Wo)
        return windows.transpose(0, 1, 4, 5, 2, 3).reshape(N, C * kH * kW, Ho * Wo)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (col2im(grad.reshape(self.windows_shape), self.x_shape, *self.options),)


def unfold(input: Tensor, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> Tensor:
    """The sliding windows of an (N, C, H, W) input as columns, (N, C*kH*kW, L), as in PyTorch."""
    if not isinstance(input, Tensor):
        raise TypeError(f"unfold: expected a Tensor input, got {type(input).__name__}")
    check_ndim("unfold", input._data, (4,), "(N, C, H, W)")
    check_float("unfold", input._data)
    kernel = as_pair(kernel_size, "kernel_size", "unfold", minimum=1)
    dilation = as_pair(dilation, "dilation", "unfold", minimum=1)
    padding = as_pair(padding, "padding", "unfold", minimum=0)
    stride = as_pair(stride, "stride", "unfold", minimum=1)
    check_window_fits("unfold", input.shape[-2:], kernel, padding, dilation)
    return Im2Col.apply(input, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
