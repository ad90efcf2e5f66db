"""``Conv2d``: a learnable 2-d convolution layer.

The layer holds a weight of shape (out_channels, in_channels, kH, kW) and an
optional bias of shape (out_channels,), and calls ``functional.conv2d`` (where the
math and its backward live). Its default initialisation is PyTorch's: Kaiming
uniform with ``a = sqrt(5)``, which works out to U[-1/sqrt(fan_in), 1/sqrt(fan_in)]
for the weight, and the same bound for the bias.

>>> import tinyres as tr
>>> from tinyres import nn
>>> conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False)
>>> conv
Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)
>>> conv(tr.zeros(2, 3, 32, 32)).shape
tinyres.Size([2, 8, 16, 16])
"""

from __future__ import annotations

import numpy as np

from tinyres.engine import Tensor
from tinyres.nn import functional as F
from tinyres.nn import init
from tinyres.nn.module import Module
from tinyres.nn.parameter import Parameter
from tinyres.ops.validate import as_pair


def _positive(value: int, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Conv2d: {name} must be a positive int, got {value!r}")
    return int(value)


class Conv2d(Module):
    """y = conv2d(x, weight) + bias over an (N, in_channels, H, W) input."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        self.in_channels = _positive(in_channels, "in_channels")
        self.out_channels = _positive(out_channels, "out_channels")
        self.kernel_size = as_pair(kernel_size, "kernel_size", "Conv2d", minimum=1)
        self.stride = as_pair(stride, "stride", "Conv2d", minimum=1)
        self.padding = as_pair(padding, "padding", "Conv2d", minimum=0)
        self.dilation = as_pair(dilation, "dilation", "Conv2d", minimum=1)
        self.groups = _positive(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: in_channels {in_channels} and out_channels {out_channels} "
                             f"must both be divisible by groups {groups}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError("Conv2d: padding_mode must be 'zeros', 'reflect', 'replicate' or "
                             f"'circular', got {padding_mode!r}")
        self.padding_mode = padding_mode
        # Each output channel sees only its group's in_channels / groups input channels.
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=np.float32))
        # Registered even when absent (None), so the module knows it has no bias.
        self.register_parameter("bias", Parameter(np.empty(out_channels, dtype=np.float32)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation (see the module docstring)."""
        init.pytorch_default_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":  # pad first (F.pad), then convolve without padding
            (ph, pw), padding = self.padding, (0, 0)
            input = F.pad(input, (pw, pw, ph, ph), mode=self.padding_mode)
        return F.conv2d(input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
