"""Element-wise activation layers: ``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``.

Each wraps the differentiable op of the same name. ``ReLU(inplace=True)`` is
accepted, as the seeds write it, but computes out of place: in-place updates would
overwrite values that backward still needs, and saving memory is not the lesson here.

>>> import tinyres as tr
>>> from tinyres import nn
>>> nn.ReLU(inplace=True)
ReLU(inplace=True)
>>> nn.ReLU()(tr.tensor([-1.0, 2.0])).tolist()
[0.0, 2.0]
>>> nn.LeakyReLU(0.5)(tr.tensor([-1.0, 2.0])).tolist()
[-0.5, 2.0]
>>> nn.Tanh()(tr.tensor([0.0])).tolist()
[0.0]
>>> nn.Sigmoid()(tr.tensor([0.0])).tolist()
[0.5]
"""

from __future__ import annotations

from tinyres.engine import Tensor
from tinyres.nn import functional as F
from tinyres.nn.module import Module


class ReLU(Module):
    """y = max(x, 0)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """y = x where x > 0, else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, input: Tensor) -> Tensor:
        return input.tanh()


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x))."""

    def forward(self, input: Tensor) -> Tensor:
        return input.sigmoid()
