"""Element-wise activation layers: ``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``.

Each wraps the differentiable op of the same name. ``ReLU(inplace=True)`` writes into
its input's memory, as in PyTorch (see ``tinyres.nn.functional.relu``).

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
        return F.relu(input, inplace=self.inplace)

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


class SiLU(Module):
    """y = x * sigmoid(x)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace  # accepted for PyTorch's signature; tinyres computes out of place

    def forward(self, input: Tensor) -> Tensor:
        return F.silu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, input: Tensor) -> Tensor:
        return input.tanh()


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x))."""

    def forward(self, input: Tensor) -> Tensor:
        return input.sigmoid()


class Softmax(Module):
    """y_i = e^{x_i} / sum_j e^{x_j} along ``dim``."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        if self.dim is None:
            raise ValueError("Softmax: pass dim= (PyTorch's implicit choice of dim is deprecated)")
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """y_i = x_i - log sum_j e^{x_j} along ``dim``."""

    def forward(self, input: Tensor) -> Tensor:
        if self.dim is None:
            raise ValueError("LogSoftmax: pass dim= (PyTorch's implicit choice of dim is deprecated)")
        return F.log_softmax(input, self.dim)


class Dropout(Module):
    """Zero each element with probability ``p`` while training (see ``ops.dropout``)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
