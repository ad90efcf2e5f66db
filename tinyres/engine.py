"""The autograd engine: ``Tensor``, ``Function`` and reverse-mode ``backward``.

A ``Tensor`` wraps a NumPy array. Every differentiable operation is a ``Function``
subclass with a ``forward`` on arrays and, next to it, a ``backward`` that turns the
gradient of the output into gradients of the inputs (the vector-Jacobian product).
Calling ``SomeFunction.apply(*tensors)`` runs ``forward`` and, when gradients are
wanted, records the call so ``backward`` can walk the graph in reverse later.

>>> import tinyres as tr
>>> a = tr.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> b = (a * a).sum()
>>> b.backward()
>>> a.grad
tensor([2., 4., 6.], shape=(3,), dtype=float32)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether operations record a graph right now (False inside ``no_grad``)."""
    return _grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager (or decorator) that stops operations from recording a graph.

    >>> import tinyres as tr
    >>> w = tr.ones(2, requires_grad=True)
    >>> with tr.no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Function:
    """One differentiable operation.

    Subclasses write ``forward(self, *arrays, **options) -> array`` and
    ``backward(self, grad) -> tuple`` with one gradient (or ``None``) per positional
    input. ``forward`` may keep what ``backward`` needs on ``self``. A gradient may
    have the broadcast output's shape: the engine sums it back to the input's shape
    (see ``unbroadcast``), so no op has to.
    """

    inputs: tuple[Any, ...] = ()
    freed = False

    def forward(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run ``forward`` on the arrays behind ``args`` and wrap the result.

        Positional arguments may be Tensors, arrays, numbers or ``None``; keyword
        arguments are options (strides, axes, ...) and are never differentiated.
        """
        fn = cls()
        arrays = [a._data if isinstance(a, Tensor) else a for a in args]
        out = fn.forward(*arrays, **kwargs)
        needs_grad = _grad_enabled and any(
            isinstance(a, Tensor) and a.requires_grad for a in args
        )
        result = Tensor(out, requires_grad=needs_grad)
        if needs_grad:
            fn.inputs = args
            result.grad_fn = fn
        return result

    def release(self) -> None:
        """Drop the inputs and saved arrays once backward has used them."""
        self.__dict__.clear()
        self.freed = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__}Backward>"


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting.

    If ``y = x + b`` broadcast ``b`` of shape (3,) to (2, 3), every copy of ``b``
    received gradient, so dL/db is the sum over the copies: the leading axes that
    broadcasting added, and the axes where ``b`` had size 1.

    >>> unbroadcast(np.ones((2, 3)), (3,))
    array([2., 2., 2.])
    >>> unbroadcast(np.ones((2, 3)), (2, 1))
    array([[3.],
           [3.]])
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise ValueError(f"gradient of shape {grad.shape} cannot reduce to {shape}")
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if ones:
        grad = grad.sum(axis=ones, keepdims=True)
    if grad.shape != shape:
        raise ValueError(f"gradient of shape {grad.shape} does not match input {shape}")
    return grad


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Turn ``data`` into an array; Python floats become float32 as in PyTorch."""
    if isinstance(data, Tensor):
        data = data._data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, np.ndarray):
        return data
    if isinstance(data, np.generic):
        return np.asarray(data)
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return arr


class Tensor:
    """An n-d array with reverse-mode autograd.

    ``grad_fn`` is the ``Function`` that made this tensor (``None`` for a leaf);
    ``grad`` collects dLoss/dself after ``backward`` for leaves (and for others that
    called ``retain_grad``).
    """

    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False):
        self._data: np.ndarray = _as_array(data, dtype)
        self.grad: Tensor | None = None
        self.grad_fn: Function | None = None
        self._retains_grad = False
        self._hooks: list[Callable[[Tensor], Tensor | None]] = []
        self.requires_grad = requires_grad

    # ---- attributes -------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self._data.dtype.kind not in "fc":
            raise RuntimeError(
                f"only floating-point tensors can require gradients, got dtype {self.dtype}"
            )
        if not value and self.grad_fn is not None:
            raise RuntimeError(
                "requires_grad can only be turned off on a leaf; use .detach() instead"
            )
        self._requires_grad = bool(value)

    @property
    def data(self) -> Tensor:
        """A Tensor sharing this one's memory, cut off from the graph (``torch``'s ``.data``).

        Changes made through it reach this tensor; autograd does not see them.
        """
        return Tensor(self._data)

    @data.setter
    def data(self, value: Any) -> None:
        self._data = _as_array(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    def dim(self) -> int:
        return self._data.ndim

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self) -> int:
        return int(self._data.size)

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied), like ``torch.Tensor.numpy``."""
        if self.requires_grad:
            raise RuntimeError(
                "can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()"
            )
        return self._data

    def item(self) -> float | int | bool:
        if self._data.size != 1:
            raise ValueError(
                f"only a one-element tensor converts to a Python scalar, got shape {self.shape}"
            )
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._data if dtype is None else self._data.astype(dtype)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extras = f"shape={self.shape}, dtype={self.dtype}"
        if self.grad_fn is not None:
            extras += f", grad_fn={self.grad_fn!r}"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}, {extras})"

    # ---- graph handling ---------------------------------------------------------
    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut off from the graph."""
        return Tensor(self._data)

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after ``backward``."""
        self._retains_grad = True

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> None:
        """Call ``hook(grad)`` when this tensor's gradient is computed.

        A hook that returns a tensor replaces the gradient, as in PyTorch.
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        self._hooks.append(hook)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        The graph is walked in reverse topological order, built with an explicit
        stack (no recursion, so a chain of 10,000 ops is fine), and each node's
        gradient is complete before it is passed on, even where the node is reused
        (``b = a + a``). Afterwards the graph is freed unless ``retain_graph``.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "element 0 of tensors does not require grad and does not have a grad_fn"
            )
        if gradient is None:
            if self._data.size != 1:
                raise RuntimeError(
                    "grad can be implicitly created only for scalar outputs; "
                    f"this tensor has shape {self.shape}, so pass gradient= of that shape"
                )
            seed = np.ones_like(self._data)
        else:
            seed = _as_array(gradient, dtype=self.dtype)
            if seed.shape != self.shape:
                raise RuntimeError(
                    f"gradient has shape {seed.shape}, expected the tensor's shape {self.shape}"
                )
        grads: dict[int, np.ndarray] = {id(self): seed}
        for node in _topological_order(self):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            for hook in node._hooks:
                replaced = hook(Tensor(grad))
                if replaced is not None:
                    grad = _as_array(replaced, dtype=node.dtype)
            if node.grad_fn is None:
                # A copy, so .grad never aliases an array an op still holds; order="K" keeps
                # the memory layout (a channels-last gradient stays so) instead of paying
                # for a transposing copy.
                total = grad.copy(order="K") if node.grad is None else node.grad._data + grad
                node.grad = Tensor(total)
                continue
            if node._retains_grad:
                node.grad = Tensor(grad.copy(order="K"))
            fn = node.grad_fn
            if fn.freed:
                raise RuntimeError(
                    "Trying to backward through the graph a second time: its saved "
                    "values were freed by the first backward(). Pass retain_graph=True "
                    "to the first call if you need to."
                )
            input_grads = fn.backward(grad)
            if len(input_grads) != len(fn.inputs):
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned {len(input_grads)} gradients "
                    f"for {len(fn.inputs)} inputs"
                )
            for inp, g in zip(fn.inputs, input_grads):
                if g is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                    continue
                g = unbroadcast(np.asarray(g, dtype=inp.dtype), inp.shape)
                key = id(inp)
                grads[key] = grads[key] + g if key in grads else g
            if not retain_graph:
                fn.release()

    # ---- operators (each is a Function in tinyres.ops) --------------------------
    def __add__(self, other: Any) -> Tensor:
        return ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ops.add(other, self)

    def __iadd__(self, other: Any) -> Tensor:
        # Out of place on purpose: ``out += identity`` (the seeds' residual add) rebinds
        # ``out`` to a new node, so the graph that produced ``out`` stays intact.
        return ops.add(self, other)

    def __sub__(self, other: Any) -> Tensor:
        return ops.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ops.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ops.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.div(other, self)

    def __pow__(self, exponent: Any) -> Tensor:
        return ops.pow(self, exponent)

    def __rpow__(self, base: Any) -> Tensor:
        return ops.pow(base, self)

    def __matmul__(self, other: Any) -> Tensor:
        return ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return ops.matmul(other, self)

    def __neg__(self) -> Tensor:
        return ops.neg(self)

    def __getitem__(self, index: Any) -> Tensor:
        return ops.index(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, Tensor):
            index = index._data
        self._data[index] = _as_array(value)

    # Comparisons give boolean tensors and are not differentiable.
    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self._data == _as_array(other))

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self._data != _as_array(other))

    def __lt__(self, other: Any) -> Tensor:
        return Tensor(self._data < _as_array(other))

    def __le__(self, other: Any) -> Tensor:
        return Tensor(self._data <= _as_array(other))

    def __gt__(self, other: Any) -> Tensor:
        return Tensor(self._data > _as_array(other))

    def __ge__(self, other: Any) -> Tensor:
        return Tensor(self._data >= _as_array(other))

    # ---- methods ----------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return ops.sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return ops.mean(self, dim, keepdim)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return ops.max(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        if dim is None:
            return Tensor(np.argmax(self._data))
        return Tensor(np.argmax(self._data, axis=dim, keepdims=keepdim))

    def exp(self) -> Tensor:
        return ops.exp(self)

    def log(self) -> Tensor:
        return ops.log(self)

    def sqrt(self) -> Tensor:
        return ops.sqrt(self)

    def abs(self) -> Tensor:
        return ops.abs(self)

    def relu(self) -> Tensor:
        return ops.relu(self)

    def sigmoid(self) -> Tensor:
        return ops.sigmoid(self)

    def tanh(self) -> Tensor:
        return ops.tanh(self)

    def view(self, *shape: Any) -> Tensor:
        return ops.reshape(self, *shape)

    def reshape(self, *shape: Any) -> Tensor:
        return ops.reshape(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return ops.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return ops.unsqueeze(self, dim)

    def squeeze(self, dim: int | None = None) -> Tensor:
        return ops.squeeze(self, dim)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return ops.transpose(self, dim0, dim1)

    def permute(self, *dims: Any) -> Tensor:
        return ops.permute(self, *dims)

    def contiguous(self) -> Tensor:
        """Self if its array is C-ordered, else a C-ordered copy in the graph (as PyTorch)."""
        return self if self._data.flags.c_contiguous else ops.clone(self)

    def clone(self) -> Tensor:
        return ops.clone(self)

    def to(self, dtype: Any) -> Tensor:
        return ops.cast(self, dtype)

    def float(self) -> Tensor:
        return ops.cast(self, np.float32)

    def double(self) -> Tensor:
        return ops.cast(self, np.float64)

    def long(self) -> Tensor:
        return Tensor(self._data.astype(np.int64))

    def zero_(self) -> Tensor:
        """Fill with zeros in place (not recorded in the graph)."""
        self._data[...] = 0
        return self


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from ``root`` that need a gradient, root first.

    An iterative depth-first search: each tensor is appended after all tensors it
    was computed from, so the reversed list visits every consumer of a tensor before
    the tensor itself, and its gradient is complete when its turn comes.
    """
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node.grad_fn is not None:
            for parent in node.grad_fn.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()
    return order


# The ops build Tensors, so they import this module; importing them last breaks the cycle.
from tinyres import ops  # noqa: E402
