"""``Flatten``: merge dimensions ``start_dim..end_dim`` into one.

The default ``start_dim=1`` keeps the batch dimension, turning (N, C, 1, 1) pooled
features into (N, C) for the final ``Linear``.

>>> import tinyres as tr
>>> from tinyres import nn
>>> nn.Flatten()(tr.zeros(2, 3, 4, 5)).shape
tinyres.Size([2, 60])
>>> nn.Flatten(0, 1)
Flatten(start_dim=0, end_dim=1)
"""

from __future__ import annotations

from tinyres.engine import Tensor
from tinyres.nn.module import Module


class Flatten(Module):
    """y = x.flatten(start_dim, end_dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
