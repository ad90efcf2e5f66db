"""Comparisons and the ops that choose between values: ``where``, ``masked_fill``, ``clamp``,
``maximum``, ``minimum``.

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


def _array(value: Any) -> Any:
    """A Tensor's array; a Python number stays one, so NumPy compares it in the tensor's
    dtype as PyTorch does (``float32 tensor == 0.1`` is True where the float32 is 0.1)."""
    if isinstance(value, Tensor):
        return value._data
    return value if isinstance(value, (bool, int, float)) else np.asarray(value)


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
    m = np.asarray(_array(mask))
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
    """z = min(max(x, lo), hi);  dz/dx = 1 where lo <= x <= hi, else 0 (PyTorch's choice).

    Backward makes the mask from x, as PyTorch's does, so x is saved (and nothing else
    is kept from forward).
    """

    saved_inputs = ((0,),)

    def forward(self, x: np.ndarray, *, lo: float | None, hi: float | None) -> np.ndarray:
        self.x, self.lo, self.hi = x, lo, hi
        # The bounds take x's dtype, so a float32 tensor stays float32.
        return np.clip(x, None if lo is None else x.dtype.type(lo), None if hi is None else x.dtype.type(hi))

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        inside = np.ones(self.x.shape, dtype=bool)
        if self.lo is not None:
            inside &= self.x >= self.lo
        if self.hi is not None:
            inside &= self.x <= self.hi
        return (grad * inside,)


def clamp_bounds(min: Any, max: Any, op: str = "clamp") -> tuple[float | None, float | None]:
    """``clamp``'s bounds as Python numbers (or None); at least one must be given (PyTorch's
    RuntimeError otherwise)."""
    if min is None and max is None:
        raise RuntimeError(f"{op}: at least one of 'min' or 'max' must not be None")
    return (None if min is None else float(_array(min))), (None if max is None else float(_array(max)))


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Limit every element to [min, max] (either bound may be None, not both)."""
    lo, hi = clamp_bounds(min, max)
    return Clamp.apply(x, lo=lo, hi=hi)


class Maximum(Function):
    """z = max(x, y) element by element;  dz/dx = 1 where x > y, 1/2 where x == y, else 0.

    At a tie the gradient is split evenly between x and y, as PyTorch does, so the two
    shares still add up to the upstream gradient. NaN propagates (``np.maximum``), and
    an input that is NaN is never the loser, so its gradient passes, as in PyTorch.
    ``Minimum`` is the same with the comparison flipped.
    """

    saved_inputs = ((0, 1), (0, 1))  # each gradient reads both inputs (through the masks)
    pick = staticmethod(np.maximum)
    loses = staticmethod(np.less)  # x loses to y where x < y

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        self.x, self.y = x, y
        return self.pick(x, y)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        share = np.where(self.x == self.y, grad / 2, grad)
        zero = np.zeros((), dtype=grad.dtype)
        dx = np.where(self.loses(self.x, self.y), zero, share)
        dy = np.where(self.loses(self.y, self.x), zero, share)
        return dx, dy


class Minimum(Maximum):
    """z = min(x, y) element by element; the gradient as ``Maximum``'s, split at ties."""

    pick = staticmethod(np.minimum)
    loses = staticmethod(np.greater)


def _tensor_pair(x: Any, y: Any, op: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
        raise TypeError(f"{op}: both arguments must be Tensors (as in PyTorch), got "
                        f"{type(x).__name__} and {type(y).__name__}; use clamp for a number")
    return operands(x, y)


def maximum(input: Tensor, other: Tensor) -> Tensor:
    """The larger of ``input`` and ``other`` at each element, broadcast (``torch.maximum``)."""
    return Maximum.apply(*_tensor_pair(input, other, "maximum"))


def minimum(input: Tensor, other: Tensor) -> Tensor:
    """The smaller of ``input`` and ``other`` at each element, broadcast (``torch.minimum``)."""
    return Minimum.apply(*_tensor_pair(input, other, "minimum"))
