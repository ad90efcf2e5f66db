"""Pooling layers: ``MaxPool2d``, ``AvgPool2d`` and ``AdaptiveAvgPool2d``.

Pooling has no parameters; each layer stores its window settings and calls the
functional form. ResNets use ``MaxPool2d(3, stride=2, padding=1)`` after the
ImageNet stem and ``AdaptiveAvgPool2d(1)`` (global average pooling) before the
classifier, which makes the network accept any input resolution.

>>> import tinyres as tr
>>> from tinyres import nn
>>> x = tr.zeros(1, 2, 8, 8)
>>> nn.MaxPool2d(3, stride=2, padding=1)(x).shape
tinyres.Size([1, 2, 4, 4])
>>> nn.AvgPool2d(2)(x).shape
tinyres.Size([1, 2, 4, 4])
>>> nn.AdaptiveAvgPool2d((1, 1))(x).shape
tinyres.Size([1, 2, 1, 1])
>>> nn.MaxPool2d(3, stride=2, padding=1)
MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
"""

from __future__ import annotations

from typing import Any

from tinyres.engine import Tensor
from tinyres.nn import functional as F
from tinyres.nn.module import Module


def _no_ceil_mode(layer: str, ceil_mode: bool) -> None:
    # Output sizes are always floor((H + 2p - span) / s) + 1; ceil_mode would add a
    # partial window at the edge, which the kernels do not implement.
    if ceil_mode:
        raise ValueError(f"{layer}: ceil_mode=True is not supported; only ceil_mode=False")


class MaxPool2d(Module):
    """Maximum over each (dilated) window; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 ceil_mode: bool = False):
        super().__init__()
        _no_ceil_mode("MaxPool2d", ceil_mode)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over each window (padding counts as zeros); ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False):
        super().__init__()
        _no_ceil_mode("AvgPool2d", ceil_mode)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average-pool to ``output_size`` (an int or an (H, W) pair) whatever the input size."""

    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
