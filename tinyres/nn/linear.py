"""``Linear`` (y = x W^T + b) and ``Identity`` (y = x).

``Linear`` is initialised as PyTorch's: Kaiming uniform with ``a = sqrt(5)`` for the
weight of shape (out_features, in_features), i.e. U[-1/sqrt(in), 1/sqrt(in)], and
the same bound for the bias.

>>> import tinyres as tr
>>> from tinyres import nn
>>> fc = nn.Linear(512, 10)
>>> fc
Linear(in_features=512, out_features=10, bias=True)
>>> fc(tr.zeros(4, 512)).shape
tinyres.Size([4, 10])
>>> nn.Identity()(tr.ones(2)).tolist()
[1.0, 1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Tensor
from tinyres.nn import functional as F
from tinyres.nn import init
from tinyres.nn.module import Module
from tinyres.nn.parameter import Parameter


class Linear(Module):
    """y = x @ weight.T + bias, over the last dimension of x."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"Linear: {name} must be a positive int, got {n!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=np.float32))
        self.register_parameter("bias", Parameter(np.empty(out_features, dtype=np.float32)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation (see the module docstring)."""
        init.pytorch_default_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        has_bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={has_bias}"


class Identity(Module):
    """Returns its input; takes (and ignores) any arguments, as PyTorch's does.

    Handy as a placeholder: ``model.fc = nn.Identity()`` turns a classifier into a
    feature extractor.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input
