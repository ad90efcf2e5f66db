"""Reductions over all elements or chosen dimensions: sum, mean, max, min, var, std;
and the ops that pick elements by rank: topk, sort (through ``gather``)."""

from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any

import numpy as np

from tinyres.engine import Function, Tensor
from tinyres.ops import compare

# What torch.max(x, dim), min, topk and sort return: a pair that unpacks as a tuple.
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


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
    """z = max_i x_i along one axis (or all);  along an axis the gradient goes to the first
    maximum, over all elements it is split evenly among the ties, as PyTorch does for both
    (``torch.max(x, dim)`` returns an index, which names one element; ``torch.max(x)`` does not).
    A NaN is the maximum, as in PyTorch. ``Min`` is the same with argmin.
    """

    pick = staticmethod(np.argmax)

    def forward(self, x: np.ndarray, *, axis: int | None, keepdim: bool) -> np.ndarray:
        self.shape, self.axis, self.keepdim = x.shape, axis, keepdim
        if axis is None:
            value = x[np.unravel_index(self.pick(x), x.shape)]
            self.ties = np.isnan(x) if np.isnan(value) else x == value
            return np.asarray(value)
        self.indices = self.pick(x, axis=axis)
        values = np.take_along_axis(x, np.expand_dims(self.indices, axis), axis)
        return values if keepdim else np.squeeze(values, axis)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        dx = np.zeros(self.shape, dtype=grad.dtype)
        if self.axis is None:
            dx[self.ties] = grad / np.count_nonzero(self.ties)
            return (dx,)
        g = grad if self.keepdim else np.expand_dims(grad, self.axis)
        np.put_along_axis(dx, np.expand_dims(self.indices, self.axis), g, self.axis)
        return (dx,)


class Min(Max):
    """z = min_i x_i;  the gradient goes to the first minimum."""

    pick = staticmethod(np.argmin)


class Gather(Function):
    """z = x[..., index[..., j], ...] along ``axis`` (torch.gather);  the gradient is
    added back at the gathered positions (``np.add.at``, so a repeated index sums)."""

    def forward(self, x: np.ndarray, *, axis: int, index: np.ndarray) -> np.ndarray:
        self.shape, self.axis, self.index = x.shape, axis, index
        return np.take_along_axis(x, index, axis)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        dx = np.zeros(self.shape, dtype=grad.dtype)
        # np.add.at with open grids: every other axis indexes itself.
        grids = list(np.indices(self.index.shape, sparse=True))
        grids[self.axis] = self.index
        np.add.at(dx, tuple(grids), grad)
        return (dx,)


def sum(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    return Sum.apply(x, axes=_axes(dim, x.ndim), keepdim=keepdim)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    if x.dtype.kind != "f":
        raise TypeError(f"mean needs a floating-point tensor, got dtype {x.dtype}")
    return Mean.apply(x, axes=_axes(dim, x.ndim), keepdim=keepdim)


def _extreme(fn: type[Max], name: str, x: Tensor, dim: int | None, keepdim: bool) -> Any:
    if x.numel() == 0:
        raise RuntimeError(f"{name}() of an empty tensor")
    if dim is None:
        return fn.apply(x, axis=None, keepdim=False)
    (axis,) = _axes(dim, x.ndim)
    values = fn.apply(x, axis=axis, keepdim=keepdim)
    indices = fn.pick(x._data, axis=axis)
    return ValuesIndices(values, Tensor(np.expand_dims(indices, axis) if keepdim else indices))


def max(x: Tensor, dim: int | Tensor | None = None, keepdim: bool = False) -> Any:
    """``x.max()`` is a scalar tensor; ``x.max(dim)`` is ``(values, indices)``;
    ``max(x, other)`` with a tensor ``other`` is the element-wise ``maximum``, as in PyTorch."""
    if isinstance(dim, Tensor):
        return compare.maximum(x, dim)
    return _extreme(Max, "max", x, dim, keepdim)


def min(x: Tensor, dim: int | Tensor | None = None, keepdim: bool = False) -> Any:
    """``x.min()`` is a scalar tensor; ``x.min(dim)`` is ``(values, indices)``;
    ``min(x, other)`` with a tensor ``other`` is the element-wise ``minimum``."""
    if isinstance(dim, Tensor):
        return compare.minimum(x, dim)
    return _extreme(Min, "min", x, dim, keepdim)


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the first maximum: into the flattened tensor, or along ``dim``."""
    if dim is None:
        return Tensor(np.asarray(np.argmax(x._data)))
    return max(x, dim, keepdim).indices


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the first minimum: into the flattened tensor, or along ``dim``."""
    if dim is None:
        return Tensor(np.asarray(np.argmin(x._data)))
    return min(x, dim, keepdim).indices


def var(x: Tensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False, *,
        correction: int | None = None) -> Tensor:
    r"""Variance :math:`\sum_i (x_i - \bar x)^2 / (n - c)` with ``c = 1`` (unbiased, the
    default) or 0, or ``correction`` as given; composed from mean, sub, mul and sum."""
    c = (1 if unbiased else 0) if correction is None else correction
    axes = _axes(dim, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes]))
    centred = x - mean(x, axes, keepdim=True)
    return sum(centred * centred, axes, keepdim) / builtins.max(n - c, 0)


def std(x: Tensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False, *,
        correction: int | None = None) -> Tensor:
    """Standard deviation: the square root of ``var``."""
    return var(x, dim, unbiased, keepdim, correction=correction).sqrt()


def gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """Pick ``x`` elements along ``dim`` at ``index`` (same number of dims as ``x``)."""
    idx = index._data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu" or idx.ndim != x.ndim:
        raise TypeError(f"gather: index must be an integer tensor with {x.ndim} dims, "
                        f"got dtype {idx.dtype} and {idx.ndim} dims")
    (axis,) = _axes(dim, x.ndim)
    size = x.shape[axis]
    if idx.size and (idx.min() < 0 or idx.max() >= size):  # PyTorch refuses a negative index too
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexError(f"gather: index {bad} is out of range for dim {dim} of size {size}; "
                         f"expected 0..{size - 1}")
    return Gather.apply(x, axis=axis, index=idx)


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    """``(values, indices)`` sorted along ``dim``; ties keep their order (a stable sort)."""
    (axis,) = _axes(dim, x.ndim)
    if not x.ndim:
        return ValuesIndices(x, Tensor(np.asarray(0)))
    order = np.argsort(-x._data if descending else x._data, axis=axis, kind="stable")
    return ValuesIndices(gather(x, axis, order), Tensor(order))


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
    """The ``k`` largest (or smallest) elements along ``dim`` and their indices, largest first."""
    (axis,) = _axes(dim, x.ndim)
    size = x.shape[axis] if x.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError(f"topk: k={k} is out of range for dim {dim} of size {size}")
    _, order = sort(x, axis, descending=largest)
    index = np.take(order._data, np.arange(k), axis=axis) if x.ndim else order._data
    return ValuesIndices(gather(x, axis, index) if x.ndim else x, Tensor(index))
