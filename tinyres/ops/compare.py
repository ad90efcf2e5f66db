"""Comparisons and the ops that choose between values: ``where``, ``masked_fill``, ``clamp``.

Comparisons (``eq``, ``lt``, ...) give boolean tensors and have no gradient, as in
PyTorch. The selecting ops route the gradient to whichever input supplied each element.

>>> import tinyres as tr
>>> x = tr.tensor([-2.0, 0.5, 3.0])
>>> tr.clamp(x, min=0.0, max=1.0).tolist()
[0.0, 0.5, 1.0]
>>> tr.where(x > 0, x, tr.zeros(3)).tolist()
[0.0, 0.5, 3.0]
>>> x.eq(0.5).tolist()
[False, True, False]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Function, Tensor
from tinyres.ops.elementwise import operands


def _array(value: Any) -> np.ndarray:
    return value._data if isinstance(value, Tensor) else np.asarray(value)


def eq(x: Tensor, other: Any) -> Tensor:
    return Tensor(_array(x) == _array(other))


def ne(x: Tensor, other: Any) -> Tensor:
    return Tensor(_array(x) != _array(other))


def lt(x: Tensor, other: Any) -> Tensor:
    return Tensor(_array(x) < _array(other))


def le(x: Tensor, other: Any) -> Tensor:
    return Tensor(_array(x) <= _array(other))


def gt(x: Tensor, other: Any) -> Tensor:
    return Tensor(_array(x) > _array(other))


def ge(x: Tensor, other: Any) -> Tensor:
    return Tensor(_array(x) >= _array(other))


def _bool_mask(mask: Any, op: str) -> np.ndarray:
    m = _array(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"{op}: the condition/mask must be a boolean tensor, got dtype {m.dtype}")
    return m


class Where(Function):
    """z = x where c else y;  dz/dx = c, dz/dy = not c (broadcast back by the engine)."""

    def forward(self, x: np.ndarray, y: np.ndarray, *, condition: np.ndarray) -> np.ndarray:
        self.condition = condition
        return np.where(condition, x, y)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zero = np.zeros((), dtype=grad.dtype)
        return np.where(self.condition, grad, zero), np.where(self.condition, zero, grad)


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """Elements of ``input`` where ``condition`` holds, else of ``other`` (torch.where)."""
    condition = _bool_mask(condition, "where")
    return Where.apply(*operands(input, other), condition=condition)


def masked_fill(x: Tensor, mask: Any, value: Any) -> Tensor:
    """``x`` with ``value`` wherever ``mask`` is True; the gradient reaches the others."""
    mask = _bool_mask(mask, "masked_fill")
    if np.broadcast_shapes(mask.shape, x.shape) != x.shape:
        raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {x.shape}")
    fill = np.asarray(_array(value), dtype=x.dtype)
    if fill.ndim != 0:
        raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got shape {fill.shape}")
    return Where.apply(Tensor(fill), x, condition=mask)


class Clamp(Function):
    """z = min(max(x, lo), hi);  dz/dx = 1 where lo <= x <= hi, else 0 (PyTorch's choice)."""

    def forward(self, x: np.ndarray, *, lo: Any, hi: Any) -> np.ndarray:
        self.inside = np.ones(x.shape, dtype=bool)
        z = x
        if lo is not None:
            self.inside &= x >= lo
            z = np.maximum(z, x.dtype.type(lo))
        if hi is not None:
            self.inside &= x <= hi
            z = np.minimum(z, x.dtype.type(hi))
        return z if z is not x else x.copy()

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad * self.inside,)


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Limit every element to [min, max] (either bound may be None, not both)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    lo = None if min is None else float(_array(min))
    hi = None if max is None else float(_array(max))
    return Clamp.apply(x, lo=lo, hi=hi)
