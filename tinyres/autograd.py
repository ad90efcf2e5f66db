"""``tinyres.autograd``: what programs import from ``torch.autograd``.

``Variable`` is the pre-2018 wrapper that PyTorch 2 keeps as a thin alias: it returns
a Tensor. The engine itself is in ``tinyres.engine``.

>>> import tinyres as torch
>>> from tinyres.autograd import Variable
>>> x = Variable(torch.ones(2), requires_grad=True)
>>> type(x).__name__, x.requires_grad
('Tensor', True)
"""

from __future__ import annotations

from typing import Any

from tinyres.engine import Function, Tensor, no_grad


def Variable(data: Any, requires_grad: bool = False, volatile: bool = False) -> Tensor:
    """``data`` as a Tensor (the same one if it is a Tensor); ``requires_grad`` is set on it
    when asked for. ``volatile`` is accepted and ignored, as in PyTorch 2 (use ``no_grad``)."""
    tensor = data if isinstance(data, Tensor) else Tensor(data)
    if requires_grad:
        tensor.requires_grad_(True)
    return tensor


__all__ = ["Function", "Variable", "no_grad"]
