"""Reductions: sum, mean and max over all elements or chosen dimensions."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from tinyres.engine import Function, Tensor

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _axes(dim: Any, ndim: int) -> tuple[int, ...]:
    """Normalise ``dim`` (None, an int or a sequence, negatives allowed) to axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    bound = ndim or 1  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    axes = []
    for d in dims:
        if not -bound <= d < bound:
            raise IndexError(f"dim {d} is out of range for a tensor with {ndim} dimensions")
        axes.append(d % bound)
    return tuple(sorted(set(axes))) if ndim else ()


def _expand_back(grad: np.ndarray, axes: tuple[int, ...], keepdim: bool, shape: tuple) -> np.ndarray:
    """Put back the reduced axes so ``grad`` broadcasts against the input."""
    if not keepdim:
        grad = np.expand_dims(grad, axes)
    return np.broadcast_to(grad, shape)


class Sum(Function):
    """z = sum_i x_i over ``axes``;  dz/dx_i = 1, so the gradient is copied back."""

    def forward(self, x: np.ndarray, *, axes: tuple[int, ...], keepdim: bool) -> np.ndarray:
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return np.asarray(x.sum(axis=axes, keepdims=keepdim))

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (_expand_back(grad, self.axes, self.keepdim, self.shape),)


class Mean(Function):
    """z = (1/n) sum_i x_i;  dz/dx_i = 1/n."""

    def forward(self, x: np.ndarray, *, axes: tuple[int, ...], keepdim: bool) -> np.ndarray:
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        self.n = int(np.prod([x.shape[a] for a in axes]))
        return np.asarray(x.mean(axis=axes, keepdims=keepdim))

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (_expand_back(grad / self.n, self.axes, self.keepdim, self.shape),)


class Max(Function):
    """z = max_i x_i along one axis (or all);  the gradient goes to the first maximum.

    Sending it to one element (not splitting it among ties) keeps the gradient
    deterministic and matches ``torch.max(x, dim)``.
    """

    def forward(self, x: np.ndarray, *, axis: int | None, keepdim: bool) -> np.ndarray:
        self.shape, self.axis, self.keepdim = x.shape, axis, keepdim
        if axis is None:
            self.index = np.unravel_index(np.argmax(x), x.shape)
            return np.asarray(x[self.index])
        self.indices = np.argmax(x, axis=axis)
        values = np.take_along_axis(x, np.expand_dims(self.indices, axis), axis)
        return values if keepdim else np.squeeze(values, axis)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        dx = np.zeros(self.shape, dtype=grad.dtype)
        if self.axis is None:
            dx[self.index] = grad
            return (dx,)
        g = grad if self.keepdim else np.expand_dims(grad, self.axis)
        np.put_along_axis(dx, np.expand_dims(self.indices, self.axis), g, self.axis)
        return (dx,)


def sum(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    return Sum.apply(x, axes=_axes(dim, x.ndim), keepdim=keepdim)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    if x.dtype.kind != "f":
        raise TypeError(f"mean needs a floating-point tensor, got dtype {x.dtype}")
    return Mean.apply(x, axes=_axes(dim, x.ndim), keepdim=keepdim)


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """``x.max()`` is a scalar tensor; ``x.max(dim)`` is ``(values, indices)``."""
    if x.numel() == 0:
        raise RuntimeError("max() of an empty tensor")
    if dim is None:
        return Max.apply(x, axis=None, keepdim=False)
    (axis,) = _axes(dim, x.ndim)
    values = Max.apply(x, axis=axis, keepdim=keepdim)
    indices = np.argmax(x._data, axis=axis)
    return MaxResult(values, Tensor(np.expand_dims(indices, axis) if keepdim else indices))
