"""``nn.utils``: gradient clipping, as training loops call it between ``backward`` and ``step``.

>>> import tinyres as torch
>>> w = torch.zeros(2, requires_grad=True)
>>> (w * torch.tensor([3.0, 4.0])).sum().backward()
>>> clip_grad_norm_([w], max_norm=1.0).item()   # the norm before clipping
5.0
>>> [round(g, 4) for g in w.grad.tolist()]
[0.6, 0.8]
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from tinyres.engine import Tensor


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    The norm is taken over all gradients as if concatenated; they are multiplied by
    ``min(1, max_norm / (norm + 1e-6))`` in place (PyTorch's formula). Returns the norm
    before clipping.
    """
    grads = _grads(parameters)
    if not grads:
        return Tensor(np.asarray(0.0, dtype=np.float32))
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        total = max(float(np.abs(g._data).max(initial=0.0)) for g in grads)
    else:
        total = sum(float((np.abs(g._data) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    scale = min(1.0, max_norm / (total + 1e-6))
    for g in grads:
        g._data *= g.dtype.type(scale)
    return Tensor(np.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    for g in _grads(parameters):
        np.clip(g._data, -clip_value, clip_value, out=g._data)
