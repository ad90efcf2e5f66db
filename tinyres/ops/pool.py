"""Pooling ops: ``max_pool2d``, ``avg_pool2d`` and ``adaptive_avg_pool2d``.

Each takes (N, C, H, W), or (C, H, W) without a batch axis as PyTorch allows.
Arguments are validated here, before any kernel runs, so a kernel can never index
outside its arrays. The kernels are in ``tinyres.kernels.pool_reference`` (the oracle)
and, for max pooling, ``tinyres.kernels.pool_numba`` (the default tier).

>>> import tinyres as tr
>>> x = tr.arange(16.0).reshape(1, 1, 4, 4)
>>> max_pool2d(x, 2)
tensor([[[[ 5.,  7.],
          [13., 15.]]]], shape=(1, 1, 2, 2), dtype=float32)
>>> adaptive_avg_pool2d(x, 1).flatten()
tensor([7.5], shape=(1,), dtype=float32)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres import kernels
from tinyres.engine import Function, Tensor
from tinyres.kernels.sizes import Pair
from tinyres.ops.validate import as_pair, check_float, check_ndim


class MaxPool2DWithIndices(Function):
    """z = the maximum of each window;  the gradient goes to the (first) maximum.

    Backward reads only the indices made at forward, never x, so x is not declared
    saved: changing x in place after forward leaves the gradient right. (PyTorch saves
    x anyway and raises there; tinyres declares only what backward reads, which
    ``tests/test_saved_declarations.py`` checks.)
    """

    def forward(
        self, x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
    ) -> np.ndarray:
        self.kernels, self.x_shape = kernels.select("max_pool2d"), x.shape
        out, self.index = self.kernels.max_pool2d_forward(x, kernel, stride, padding, dilation)
        return out

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (self.kernels.max_pool2d_backward(grad, self.index, self.x_shape),)


class AvgPool2D(Function):
    """z = the mean of each window (padding counts as zeros);  dz/dx = 1/(kh*kw) per window.

    Every tier runs the NumPy reference: a Numba kernel measured no faster.
    """

    def forward(self, x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
        self.kernels = kernels.select("avg_pool2d")
        self.x_shape, self.options = x.shape, (kernel, stride, padding)
        return self.kernels.avg_pool2d_forward(x, kernel, stride, padding)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (self.kernels.avg_pool2d_backward(grad, self.x_shape, *self.options),)


class AdaptiveAvgPool2D(Function):
    """z = the mean of each of out_h x out_w windows that tile the input (they may overlap)."""

    def forward(self, x: np.ndarray, *, out_hw: Pair) -> np.ndarray:
        self.kernels, self.x_shape = kernels.select("avg_pool2d"), x.shape
        return self.kernels.adaptive_avg_pool2d_forward(x, out_hw)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (self.kernels.adaptive_avg_pool2d_backward(grad, self.x_shape),)


def _batched(op: str, input: Tensor) -> tuple[Tensor, bool]:
    """Check the input is a float (N, C, H, W) or (C, H, W); give it a batch axis."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected a Tensor input, got {type(input).__name__}")
    check_ndim(op, input._data, (3, 4), "(C, H, W) or (N, C, H, W)")
    check_float(op, input._data)
    return (input, False) if input.ndim == 4 else (input.unsqueeze(0), True)


def _window_options(
    op: str, input: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any = 1
) -> tuple[Pair, Pair, Pair, Pair]:
    """Normalise and check kernel, stride, padding and dilation against the input."""
    if 0 in input.shape[1:]:  # padding would make room for windows of nothing but padding
        raise ValueError(f"{op}: expected non-empty channels, height and width (only the batch may be "
                         f"empty, as in PyTorch), got input of shape {tuple(input.shape)}")
    kernel = as_pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None or stride == [] else as_pair(stride, "stride", op)
    padding, dilation = as_pair(padding, "padding", op), as_pair(dilation, "dilation", op)
    for name, value, low in (("kernel_size", kernel, 1), ("stride", stride, 1),
                             ("dilation", dilation, 1), ("padding", padding, 0)):
        if min(value) < low:
            raise ValueError(f"{op}: {name} must be at least {low}, got {value}")
    for axis, size in zip(("height", "width"), (0, 1)):
        span = dilation[size] * (kernel[size] - 1) + 1
        if padding[size] > span // 2:
            raise ValueError(
                f"{op}: padding {padding[size]} along the {axis} must be at most half the "
                f"(dilated) kernel size {span}, i.e. at most {span // 2}"
            )
        padded = input.shape[-2 + size] + 2 * padding[size]
        if span > padded:
            raise ValueError(
                f"{op}: kernel spans {span} along the {axis} but the padded input has only {padded}"
            )
    return kernel, stride, padding, dilation


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1) -> Tensor:
    """Max over k x k windows; windows may overlap (stride < kernel); padding is -inf."""
    x, unbatched = _batched("max_pool2d", input)
    kernel, stride, padding, dilation = _window_options(
        "max_pool2d", x, kernel_size, stride, padding, dilation
    )
    out = MaxPool2DWithIndices.apply(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    return out.squeeze(0) if unbatched else out


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Mean over k x k windows, dividing by k*k even where the window covers padding."""
    x, unbatched = _batched("avg_pool2d", input)
    kernel, stride, padding, _ = _window_options("avg_pool2d", x, kernel_size, stride, padding)
    out = AvgPool2D.apply(x, kernel=kernel, stride=stride, padding=padding)
    return out.squeeze(0) if unbatched else out


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average-pool to a fixed ``output_size`` whatever the input's height and width.

    ``None`` in ``output_size`` keeps that input dimension, as in PyTorch.
    """
    x, unbatched = _batched("adaptive_avg_pool2d", input)
    sizes = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else output_size
    sizes = tuple(x.shape[2 + i] if s is None else s for i, s in enumerate(sizes))
    out_hw = as_pair(sizes, "output_size", "adaptive_avg_pool2d")
    if min(out_hw) < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be at least 1, got {out_hw}")
    if 0 in x.shape[2:] and out_hw != (1, 1):  # PyTorch returns NaN for 1x1 only, and refuses the rest
        raise ValueError(f"adaptive_avg_pool2d: expected a non-empty height and width for an output larger "
                         f"than 1x1, got input of shape {tuple(x.shape)} and output_size {out_hw}")
    out = AdaptiveAvgPool2D.apply(x, out_hw=out_hw)
    return out.squeeze(0) if unbatched else out
