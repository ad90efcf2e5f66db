"""Dropout (Srivastava et al., 2014): zero each element with probability p while training.

The survivors are scaled by 1 / (1 - p) ("inverted dropout"), so the expected value
of every element is unchanged and evaluation needs no rescaling. The mask is drawn
from tinyres's generator (``tinyres.manual_seed``) and applied with a multiplication,
so autograd gives the gradient: the same mask, the same scale.

>>> import tinyres as tr
>>> x = tr.ones(2, 3)
>>> dropout(x, 0.5, training=False) is x
True
>>> sorted(set(dropout(x, 0.5).numpy().ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
True
"""

from __future__ import annotations

from tinyres import creation
from tinyres.engine import Tensor
from tinyres.ops.validate import check_float


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """``input`` with each element zeroed with probability ``p`` (when ``training``)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    check_float("dropout", input._data)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = creation.generator().random(input.shape) >= p
    return input * (keep / (1.0 - p)).astype(input.dtype)
