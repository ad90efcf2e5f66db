"""Operations that move elements around: reshape, permute, index, cat, stack.

Their backward moves the gradient back the same way: reshape it back, apply the
inverse permutation, scatter it into the indexed positions, split it up.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Function, Tensor, _saved


def _shape_args(shape: tuple) -> tuple[int, ...]:
    """Accept ``view(2, 3)`` and ``view((2, 3))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(int(s) for s in shape)


class Reshape(Function):
    """z = x with a new shape (same elements, row-major order)."""

    def forward(self, x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise RuntimeError(
                f"shape {list(shape)} is invalid for input of shape {x.shape} "
                f"({x.size} elements)"
            ) from None

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad.reshape(self.shape),)


class Permute(Function):
    """z = x with its axes reordered; the gradient takes the inverse order."""

    def forward(self, x: np.ndarray, *, dims: tuple[int, ...]) -> np.ndarray:
        self.inverse = tuple(np.argsort(dims))
        return x.transpose(dims)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad.transpose(self.inverse),)


class Index(Function):
    """z = x[index];  the gradient is scattered back into a zero array.

    ``np.add.at`` adds rather than assigns, so an element picked twice by an
    integer-array index gets both contributions.
    """

    def forward(self, x: np.ndarray, *, index: Any) -> np.ndarray:
        self.shape, self.index = x.shape, index
        z = x[index]
        if not isinstance(z, np.ndarray):
            # A full integer index gives a NumPy scalar (a copy); PyTorch gives a 0-d view
            # that shares memory and version counter with x. A trailing ... makes NumPy agree.
            z = x[(*index, ...) if isinstance(index, tuple) else (index, ...)]
        return z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        dx = np.zeros(self.shape, dtype=grad.dtype)
        np.add.at(dx, self.index, grad)
        return (dx,)


class IndexPut(Function):
    """z = x with z[index] = y (``x[index] = y``);  dz/dx = 1 outside ``index``, dz/dy = 1 inside.

    An element written twice by an integer-array index keeps the last write in the
    forward, but each write's y gets the gradient: a rare case PyTorch leaves undefined.
    """

    def forward(self, x: np.ndarray, y: np.ndarray, *, index: Any) -> np.ndarray:
        self.index = index
        z = x.copy()
        z[index] = y
        return z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx = grad.copy()
        dx[self.index] = 0
        return dx, grad[self.index]


class Cat(Function):
    """z = [x_1, x_2, ...] joined along ``axis``;  the gradient is split back."""

    def forward(self, *xs: np.ndarray, axis: int) -> np.ndarray:
        self.axis = axis
        self.splits = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return np.concatenate(xs, axis=axis)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.split(grad, self.splits, axis=self.axis))


class Stack(Function):
    """z = [x_1, x_2, ...] stacked along a new ``axis``."""

    def forward(self, *xs: np.ndarray, axis: int) -> np.ndarray:
        self.axis = axis
        return np.stack(xs, axis=axis)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.moveaxis(grad, self.axis, 0))


def _dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim


def reshape(x: Tensor, *shape: Any) -> Tensor:
    return Reshape.apply(x, shape=_shape_args(shape))


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions ``start_dim`` to ``end_dim`` into one (torch.flatten)."""
    if x.ndim == 0:
        return reshape(x, 1)
    start, end = _dim(start_dim, x.ndim), _dim(end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:start] + (-1,) + x.shape[end + 1 :]
    if x.numel() == 0:
        shape = x.shape[:start] + (int(np.prod(x.shape[start : end + 1])),) + x.shape[end + 1 :]
    return reshape(x, shape)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    axis = _dim(dim, x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x: Tensor, dim: int | None = None) -> Tensor:
    if dim is None:
        return reshape(x, tuple(n for n in x.shape if n != 1))
    axis = _dim(dim, x.ndim)
    if x.shape[axis] != 1:
        return x
    return reshape(x, x.shape[:axis] + x.shape[axis + 1 :])


def permute(x: Tensor, *dims: Any) -> Tensor:
    dims = _shape_args(dims)
    if sorted(_dim(d, x.ndim) for d in dims) != list(range(x.ndim)):
        raise ValueError(f"permute needs each of the {x.ndim} dims once, got {dims}")
    return Permute.apply(x, dims=tuple(_dim(d, x.ndim) for d in dims))


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    dims = list(range(x.ndim))
    a, b = _dim(dim0, x.ndim), _dim(dim1, x.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, dims=tuple(dims))


def as_index(index: Any) -> Any:
    """An index NumPy understands: Tensors in it (masks, integer arrays) become arrays.

    The arrays are the tensors' memory, not copies: an op that keeps the index for its
    backward declares the tensors with ``save_index``.
    """
    if isinstance(index, Tensor):
        return index._data
    if isinstance(index, tuple):
        return tuple(i._data if isinstance(i, Tensor) else i for i in index)
    return index


def save_index(fn: Function | None, index: Any) -> None:
    """Count the Tensors in ``index`` as saved by ``fn`` (if a graph was recorded).

    Backward scatters the gradient through the index, so changing an index tensor in
    place before backward would move the gradient silently; saved, it raises PyTorch's
    "modified by an inplace operation" error, as PyTorch does.
    """
    if fn is not None:
        tensors = index if isinstance(index, tuple) else (index,)
        fn.saved = (*fn.saved, *(_saved(t) for t in tensors if isinstance(t, Tensor)))


def index(x: Tensor, index: Any) -> Tensor:
    z = Index.apply(x, index=as_index(index))
    save_index(z.grad_fn, index)
    return z


def _same_kind(tensors: list[Tensor], name: str) -> list[Tensor]:
    if not tensors:
        raise ValueError(f"{name} needs at least one tensor")
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{name} got tensors of different dtypes: {sorted(map(str, dtypes))}")
    return tensors


def cat(tensors: list[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension (torch.cat)."""
    tensors = _same_kind(list(tensors), "cat")
    axis = _dim(dim, tensors[0].ndim)
    for i, t in enumerate(tensors):
        if t.ndim != tensors[0].ndim or any(
            a != b for d, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if d != axis
        ):
            raise ValueError(
                f"cat: tensor {i} has shape {t.shape}, expected {tensors[0].shape} "
                f"except in dim {axis}"
            )
    return Cat.apply(*tensors, axis=axis)


def stack(tensors: list[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dimension (torch.stack)."""
    tensors = _same_kind(list(tensors), "stack")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape}, expected {tensors[0].shape}")
    return Stack.apply(*tensors, axis=_dim(dim, tensors[0].ndim + 1))


class Expand(Function):
    """z = x repeated along its size-1 (or new leading) axes, without copying;
    the engine's ``unbroadcast`` sums the gradient back to x's shape."""

    def forward(self, x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(x, shape)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad,)


def expand(x: Tensor, *sizes: Any) -> Tensor:
    """A view of ``x`` with size-1 axes repeated to ``sizes`` (-1 keeps a size), as torch.expand."""
    sizes = _shape_args(sizes)
    extra = len(sizes) - x.ndim
    if extra < 0:
        raise RuntimeError(f"expand: {len(sizes)} sizes given for a tensor with {x.ndim} dims")
    shape = []
    for i, n in enumerate(sizes):
        old = x.shape[i - extra] if i >= extra else None
        if n == -1:
            if old is None:
                raise RuntimeError(f"expand: -1 is not allowed for the new leading dim {i}")
            n = old
        if old is not None and old not in (1, n):
            raise RuntimeError(
                f"expand: the size of dim {i - extra} ({old}) must match {n} or be 1 "
                f"(tensor shape {x.shape}, sizes {sizes})"
            )
        shape.append(n)
    return Expand.apply(x, shape=tuple(shape))


def t(x: Tensor) -> Tensor:
    """The transpose of a matrix (a 0-d or 1-d tensor is returned as it is)."""
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with at most 2 dims, got {x.ndim}; use transpose")
    return transpose(x, 0, 1) if x.ndim == 2 else x
