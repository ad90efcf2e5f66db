"""``GroupNorm`` and ``LayerNorm``: per-sample normalisation with a learnable scale and shift.

The math (composed from primitives) is in ``tinyres.ops.normalize``. Weights start
at 1 and biases at 0, as in PyTorch.

>>> import tinyres as tr
>>> from tinyres import nn
>>> nn.GroupNorm(2, 4)(tr.randn(3, 4, 5, 5)).shape
tinyres.Size([3, 4, 5, 5])
>>> nn.LayerNorm(8)
LayerNorm((8,), eps=1e-05, elementwise_affine=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Tensor
from tinyres.nn import functional as F
from tinyres.nn.module import Module
from tinyres.nn.parameter import Parameter


class GroupNorm(Module):
    """Split the C channels into ``num_groups`` groups and normalise each group of each sample."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels {num_channels} must be divisible by "
                             f"num_groups {num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        weight, bias = np.ones(num_channels, np.float32), np.zeros(num_channels, np.float32)
        self.register_parameter("weight", Parameter(weight) if affine else None)
        self.register_parameter("bias", Parameter(bias) if affine else None)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm expects (N, {self.num_channels}, ...) input, got shape {input.shape}"
            )
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes of each sample."""

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        affine_bias = elementwise_affine and bias
        weight = Parameter(np.ones(shape, np.float32)) if elementwise_affine else None
        self.register_parameter("weight", weight)
        self.register_parameter("bias", Parameter(np.zeros(shape, np.float32)) if affine_bias else None)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
