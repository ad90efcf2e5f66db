"""The autograd engine: ``Tensor``, ``Function`` and reverse-mode ``backward``.

A ``Tensor`` wraps a NumPy array. Every differentiable operation is a ``Function``
subclass with a ``forward`` on arrays and, next to it, a ``backward`` that turns the
gradient of the output into gradients of the inputs (the vector-Jacobian product).
Calling ``SomeFunction.apply(*tensors)`` runs ``forward`` and, when gradients are
wanted, records the call so ``backward`` can walk the graph in reverse later.

Three things PyTorch users rely on live here too: in-place ops (``add_``, ``+=``,
``x[i] = v``, ...) with a version counter per block of memory, so ``backward`` raises
when a value an op saved was overwritten; grad mode (``no_grad`` and friends) per
thread and per async task; and hooks whose replacement gradient must keep its shape
and dtype.

>>> import tinyres as tr
>>> a = tr.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> b = (a * a).sum()
>>> b.backward()
>>> a.grad
tensor([2., 4., 6.], shape=(3,), dtype=float32)
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from tinyres.plumbing import Size, device, float_dtype_or_device, refuse_device, refuse_half

# ---- grad mode ------------------------------------------------------------------------
# A ContextVar, not a global: each thread (and each asyncio task) has its own value, so
# ``no_grad()`` while one thread evaluates cannot stop another thread from recording.
_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("grad_enabled", default=True)


def is_grad_enabled() -> bool:
    """Whether operations record a graph right now, in this thread (False inside ``no_grad``)."""
    return _grad_enabled.get()


class _GradMode:
    """Set grad mode for a ``with`` block, or for every call of a decorated function.

    One instance serves one ``with`` at a time (as in PyTorch); as a decorator each
    call gets a fresh instance, so recursion and threads are safe.
    """

    mode: bool | None = None  # None: leave grad mode as it is

    def __init__(self) -> None:
        self._tokens: list[contextvars.Token[bool]] = []

    def __enter__(self) -> None:
        if self.mode is not None:
            self._tokens.append(_grad_enabled.set(self.mode))

    def __exit__(self, *exc: object) -> None:
        if self._tokens:
            _grad_enabled.reset(self._tokens.pop())

    def _fresh(self) -> _GradMode:
        return type(self)()

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return function(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """Context manager (or decorator) that stops operations from recording a graph.

    >>> import tinyres as tr
    >>> w = tr.ones(2, requires_grad=True)
    >>> with tr.no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """

    mode = False


class enable_grad(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """Context manager (or decorator) that turns recording back on inside ``no_grad``."""

    mode = True


class set_grad_enabled(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """Turn recording on or off: at once when called, until the end of the block in ``with``.

    >>> import tinyres as tr
    >>> with tr.set_grad_enabled(False):
    ...     tr.is_grad_enabled()
    False
    >>> tr.is_grad_enabled()
    True
    """

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self.mode = bool(mode)
        # Called as a plain function it takes effect now, as torch.set_grad_enabled does.
        self._tokens.append(_grad_enabled.set(self.mode))

    def __enter__(self) -> None:
        pass  # already set by __init__; __exit__ restores the value from before

    def _fresh(self) -> _GradMode:
        fresh = _GradMode()
        fresh.mode = self.mode
        return fresh

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        self.__exit__()  # as a decorator it only applies inside the decorated function
        return super().__call__(function)


class inference_mode(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """``no_grad`` under PyTorch's other name (tinyres has no separate inference tensors).

    ``inference_mode(False)`` leaves grad mode unchanged, as in PyTorch.
    """

    def __init__(self, mode: bool = True) -> None:
        super().__init__()
        self.mode = False if mode else None

    def _fresh(self) -> _GradMode:
        return inference_mode(self.mode is False)


# ---- version counters -----------------------------------------------------------------
class VersionCounter:
    """How many times a tensor's memory was modified in place.

    One counter per block of memory: a view (``reshape``, ``x[0]``, ``detach()``) shares
    its base's counter, so a change made through any of them is seen by all. ``.data``
    gets a fresh counter on purpose, as in PyTorch: changes through it are invisible.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class SavedVersion(NamedTuple):
    """A tensor a ``Function`` saved for backward, and its version at that moment."""

    counter: VersionCounter
    version: int
    shape: tuple[int, ...]
    dtype: np.dtype
    producer: str | None  # the op that made the tensor, for the error message

    def check(self) -> None:
        if self.counter.value == self.version:
            return
        made_by = f", which is output 0 of {self.producer}," if self.producer else ""
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{self.dtype} {list(self.shape)}]{made_by} is at version "
            f"{self.counter.value}; expected version {self.version} instead. Hint: the "
            "in-place change happened between this op's forward and backward; use an "
            "out-of-place op (x = x + y) or clone() the tensor first."
        )


def _saved(t: Tensor) -> SavedVersion:
    producer = repr(t.grad_fn)[1:-1] if t.grad_fn is not None else None
    return SavedVersion(t._version_counter, t._version_counter.value, t.shape, t.dtype, producer)


class Function:
    """One differentiable operation.

    Subclasses write ``forward(self, *arrays, **options) -> array`` and
    ``backward(self, grad) -> tuple`` with one gradient (or ``None``) per positional
    input. ``forward`` may keep what ``backward`` needs on ``self``. An op whose
    backward reads input values declares them, so the engine can detect that they
    were modified in place before backward ran: ``saved_inputs[i]`` lists the inputs
    whose gradient reads input i (``z = x * y``: dz/dx reads y and dz/dy reads x, so
    ``((1,), (0,))``), and input i counts as saved only if one of those gradients is
    wanted, as in PyTorch (``y = x * 2`` does not save x).
    ``saves_output`` says backward reads the output. A gradient may have the
    broadcast output's shape: the engine sums it back to the input's shape (see
    ``unbroadcast``), so no op has to.
    """

    saved_inputs: tuple[tuple[int, ...], ...] = ()
    saves_output = False

    inputs: tuple[Any, ...] = ()
    # The graph node of each input when this op ran: its grad_fn, the leaf tensor
    # itself, or None (no gradient wanted). Recorded now, because an in-place op can
    # later give the same Tensor object a new grad_fn.
    parents: tuple[Function | Tensor | None, ...] = ()
    saved: tuple[SavedVersion, ...] = ()
    _hooks: tuple[Callable[[Tensor], Tensor | None], ...] = ()  # hooks of the output tensor
    retained_by: Tensor | None = None  # the output tensor, if it called retain_grad()
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
        for a in args:
            _refuse_stale_view(a)
        arrays = [a._data if isinstance(a, Tensor) else a for a in args]
        out = fn.forward(*arrays, **kwargs)
        needs_grad = _grad_enabled.get() and any(
            isinstance(a, Tensor) and a.requires_grad for a in args
        )
        result = Tensor(out, requires_grad=needs_grad)
        _share_counter_with_base(result, args)
        if needs_grad:
            fn.inputs = args
            fn.parents = tuple(_node(a) for a in args)
            saved = [_saved(args[i]) for i in range(len(cls.saved_inputs)) if cls.saves_input(i, args)]
            result.grad_fn = fn
            fn.saved = (*saved, _saved(result)) if cls.saves_output else tuple(saved)
        return result

    @classmethod
    def saves_input(cls, i: int, args: tuple[Any, ...]) -> bool:
        """Whether backward will read input ``i``: a gradient that needs it is wanted."""
        readers = cls.saved_inputs[i] if i < len(cls.saved_inputs) else ()
        return isinstance(args[i], Tensor) and any(
            isinstance(args[j], Tensor) and args[j].requires_grad for j in readers
        )

    def release(self) -> None:
        """Drop the inputs and saved arrays once backward has used them."""
        self.__dict__.clear()
        self.freed = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__}Backward>"


def _node(a: Any) -> Function | Tensor | None:
    """The graph node a gradient for ``a`` goes to: its grad_fn, or ``a`` if a leaf."""
    if not (isinstance(a, Tensor) and a.requires_grad):
        return None
    return a if a.grad_fn is None else a.grad_fn


def _share_counter_with_base(result: Tensor, args: tuple[Any, ...]) -> None:
    """A result that shares memory with an input (a view) shares its version counter.

    ``may_share_memory`` compares address bounds only: O(1), not per element.
    """
    for a in args:
        if isinstance(a, Tensor) and np.may_share_memory(result._data, a._data):
            result._version_counter, result._is_view = a._version_counter, True
            result._view_version = a._version_counter.value
            return


def _refuse_stale_view(t: Any) -> None:
    """Refuse to use a view in the graph whose base changed in place after it was taken.

    Its values are the new ones but its history says the old: PyTorch rewrites the
    history, tinyres raises rather than give a gradient that does not match the value.
    """
    if isinstance(t, Tensor) and t._is_view and t.grad_fn is not None and t._version != t._view_version:
        raise RuntimeError(
            f"this view (made by {t.grad_fn!r}) was taken before its base was modified in place "
            f"(version {t._view_version}, now {t._version}); tinyres does not update a view's "
            "history, so take the view again after the in-place change"
        )


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting.

    If ``y = x + b`` broadcast ``b`` of shape (3,) to (2, 3), every copy of ``b``
    received gradient, so dL/db is the sum over the copies: the leading axes that
    broadcasting added, and the axes where ``b`` had size 1.

    >>> g = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    >>> unbroadcast(g, (3,))
    array([11., 22., 33.])
    >>> unbroadcast(g, (2, 1))
    array([[ 6.],
           [60.]])
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


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


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
        if self._data.dtype.kind in "cfV" and self._data.dtype not in _FLOATS:
            # Refused at the door, not deep inside a kernel: float16 and complex would
            # otherwise fail later or (relu on complex) give a meaningless result.
            if self._data.dtype == np.float16:
                refuse_half("tensor")
            raise TypeError(f"tensor: dtype {self._data.dtype} is not supported by tinyres; "
                            "use float32, float64, an integer or bool dtype")
        self.grad: Tensor | None = None
        self.grad_fn: Function | None = None
        self._hooks: list[Callable[[Tensor], Tensor | None]] = []  # a leaf's; see register_hook
        self._version_counter = VersionCounter()
        self._is_view = False  # shares memory (and the counter) with another tensor
        self._view_version = 0  # the counter's value when the view was taken
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

        Changes made through it reach this tensor, and autograd does not see them: it
        has its own version counter, as in PyTorch. ``detach()`` is the safe variant.
        """
        return Tensor(self._data)

    @data.setter
    def data(self, value: Any) -> None:
        self._data = _as_array(value)

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's memory has seen (PyTorch's ``_version``)."""
        return self._version_counter.value

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

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

    def size(self, dim: int | None = None) -> Size | int:
        return Size(self._data.shape) if dim is None else self._data.shape[dim]

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
        extras = f"shape={self._data.shape}, dtype={self.dtype}"
        if self.grad_fn is not None:
            extras += f", grad_fn={self.grad_fn!r}"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}, {extras})"

    # ---- graph handling ---------------------------------------------------------
    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data (and its version counter), cut off from the graph."""
        out = Tensor(self._data)
        out._version_counter, out._is_view = self._version_counter, True
        return out

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after ``backward``."""
        if self.grad_fn is not None:
            self.grad_fn.retained_by = self

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> None:
        """Call ``hook(grad)`` when this tensor's gradient is computed.

        A hook that returns a tensor replaces the gradient, as in PyTorch; it must keep
        the gradient's shape and dtype. On a non-leaf the hook belongs to the op that
        made the tensor, so after an in-place change it still sees the gradient of the
        value it was registered on (PyTorch's rule).
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        if self.grad_fn is None:
            self._hooks.append(hook)
        else:
            self.grad_fn._hooks = (*self.grad_fn._hooks, hook)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        The graph is walked by ``WALK.get()`` (``backpropagate`` unless a ``with`` block,
        ``tinyres.course.mine``, put another walk in); afterwards it is freed unless
        ``retain_graph``.
        """
        _refuse_stale_view(self)
        WALK.get()(self, _seed_gradient(self, gradient), retain_graph)

    # ---- operators (each is a Function in tinyres.ops) --------------------------
    def __add__(self, other: Any) -> Tensor:
        return ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ops.add(other, self)

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

    def float(self) -> Tensor:
        return ops.cast(self, np.float32)

    def double(self) -> Tensor:
        return ops.cast(self, np.float64)

    def long(self) -> Tensor:
        return Tensor(self._data.astype(np.int64))
    # ---- in-place operations (PyTorch's trailing underscore; each bumps the version) -----
    def _inplace(self, fn: type[Function], *args: Any, **options: Any) -> Tensor:
        """Compute ``fn(self, *args)`` and write it into this tensor's memory.

        When a graph is recorded, this tensor takes the new op as its ``grad_fn``; the
        op's inputs keep the old version's node, so consumers of the old value still
        send their gradient to it. An op whose backward reads its first input gets a
        copy of the old value, which the write would otherwise destroy.
        """
        recording = _grad_enabled.get() and any(
            isinstance(a, Tensor) and a.requires_grad for a in (self, *args)
        )
        if recording:
            _refuse_inplace_in_graph(self)
        source = self._old_version() if recording and fn.saves_input(0, (self, *args)) else self
        result = fn.apply(source, *args, **options)
        if result.shape != self.shape:
            raise RuntimeError(
                f"output with shape {list(self.shape)} doesn't match the broadcast shape {list(result.shape)}"
            )
        if not np.can_cast(result.dtype, self.dtype, casting="same_kind"):
            raise RuntimeError(
                f"result type {result.dtype} can't be cast to the desired output type {self.dtype}"
            )
        self._data[...] = result._data
        self._version_counter.value += 1
        if recording:
            self._take_history(result)
        return self

    def _old_version(self) -> Tensor:
        """A copy of this tensor's value that stands for it in the graph (same grad_fn)."""
        old = Tensor(self._data.copy())
        old.grad_fn, old._requires_grad = self.grad_fn, self.requires_grad
        return old

    # ---- PyTorch-program plumbing -------------------------------------------------
    # What public PyTorch code calls around its models (devices, conversions, the
    # comparisons and reductions of accuracy code); the ops live in tinyres.ops.
    @property
    def device(self) -> device:
        return device("cpu")

    @property
    def is_cuda(self) -> bool:
        return False

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other)``: a float
        cast is differentiable; the device must be the CPU; ``non_blocking``/``copy`` as PyTorch."""
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        unknown = set(kwargs) - {"dtype", "device"}
        if unknown:
            raise TypeError(f"Tensor.to() got unexpected keyword arguments {sorted(unknown)}")
        dtype = None
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif arg is not None:
                dtype = float_dtype_or_device(arg, "Tensor.to") or dtype
        out = self if dtype is None else ops.cast(self, dtype)
        return ops.clone(out) if copy and out is self else out

    def cpu(self) -> Tensor:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Tensor:
        refuse_device("cuda")
        return self  # unreachable: refuse_device raises

    def half(self) -> Tensor:
        refuse_half("Tensor.half")
        return self  # unreachable: refuse_half raises

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def bool(self) -> Tensor:
        return Tensor(self._data.astype(np.bool_))

    def int(self) -> Tensor:
        return Tensor(self._data.astype(np.int32))

    def __index__(self) -> int:
        """A one-element integer tensor used as an index: ``classes[labels[j]]``."""
        if self._data.size != 1 or self._data.dtype.kind not in "iub":
            raise TypeError(
                f"only one-element integer tensors can be used as an index, got shape {self.shape} "
                f"and dtype {self.dtype}"
            )
        return int(self._data.reshape(()))

    def add(self, other: Any) -> Tensor:
        return ops.add(self, other)

    def sub(self, other: Any) -> Tensor:
        return ops.sub(self, other)

    def mul(self, other: Any) -> Tensor:
        return ops.mul(self, other)

    def div(self, other: Any) -> Tensor:
        return ops.div(self, other)

    def eq(self, other: Any) -> Tensor:
        return ops.eq(self, other)

    def ne(self, other: Any) -> Tensor:
        return ops.ne(self, other)

    def lt(self, other: Any) -> Tensor:
        return ops.lt(self, other)

    def le(self, other: Any) -> Tensor:
        return ops.le(self, other)

    def gt(self, other: Any) -> Tensor:
        return ops.gt(self, other)

    def ge(self, other: Any) -> Tensor:
        return ops.ge(self, other)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return ops.min(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return ops.argmin(self, dim, keepdim)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
        return ops.topk(self, k, dim, largest, sorted)

    def sort(self, dim: int = -1, descending: bool = False) -> Any:
        return ops.sort(self, dim, descending)

    def gather(self, dim: int, index: Tensor) -> Tensor:
        return ops.gather(self, dim, index)

    def var(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False, **kwargs: Any) -> Tensor:
        return ops.var(self, dim, unbiased, keepdim, **kwargs)

    def std(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False, **kwargs: Any) -> Tensor:
        return ops.std(self, dim, unbiased, keepdim, **kwargs)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        return ops.clamp(self, min, max)

    clip = clamp

    def softmax(self, dim: int) -> Tensor:
        return ops.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        return ops.log_softmax(self, dim)

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        return ops.masked_fill(self, mask, value)

    def where(self, condition: Any, other: Any) -> Tensor:
        return ops.where(condition, self, other)

    def t(self) -> Tensor:
        return ops.t(self)

    def expand(self, *sizes: Any) -> Tensor:
        return ops.expand(self, *sizes)

    def expand_as(self, other: Tensor) -> Tensor:
        return ops.expand(self, other.shape)

    def view_as(self, other: Tensor) -> Tensor:
        return ops.reshape(self, other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return ops.reshape(self, other.shape)

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        """Fill with N(mean, std^2) samples in place (old init code: ``w.data.normal_(0, s)``)."""
        from tinyres.nn import init  # nn builds on the engine, so imported when used

        return init.normal_(self, mean, std)

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        """Fill with U[a, b) samples in place."""
        from tinyres.nn import init

        return init.uniform_(self, a, b)

    def __format__(self, spec: str) -> str:
        """``f"{loss:.3f}"`` formats a one-element tensor as its number, as PyTorch does."""
        if spec and self._data.size == 1:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def _take_history(self, result: Tensor) -> None:
        """Make ``result``'s op this tensor's ``grad_fn``; what it saved of ``result`` is now us."""
        fn = result.grad_fn
        fn.saved = tuple(
            s._replace(counter=self._version_counter, version=self._version)
            if s.counter is result._version_counter else s
            for s in fn.saved
        )
        if self.grad_fn is not None and self.grad_fn.retained_by is self:
            self.grad_fn.retained_by, fn.retained_by = None, self
        self.grad_fn, self._requires_grad = fn, True

    def add_(self, other: Any, *, alpha: float = 1) -> Tensor:
        return self._inplace(ops.elementwise.Add, _operand(self, other if alpha == 1 else other * alpha))

    def sub_(self, other: Any, *, alpha: float = 1) -> Tensor:
        return self._inplace(ops.elementwise.Sub, _operand(self, other if alpha == 1 else other * alpha))

    def mul_(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.Mul, _operand(self, other))

    def div_(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.Div, _operand(self, other))

    def copy_(self, src: Any) -> Tensor:
        source = src if isinstance(src, Tensor) else Tensor(_as_array(src, self.dtype))
        return self._inplace(ops.elementwise.Copy, source)

    def fill_(self, value: Any) -> Tensor:
        return self.copy_(value)

    def zero_(self) -> Tensor:
        return self.copy_(0)

    def clamp_(self, min: float | None = None, max: float | None = None) -> Tensor:
        lo, hi = ops.compare.clamp_bounds(min, max, "clamp_")
        return self._inplace(ops.compare.Clamp, lo=lo, hi=hi)

    def relu_(self) -> Tensor:
        return self._inplace(ops.elementwise.Relu)

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)

    def __setitem__(self, index: Any, value: Any) -> None:
        index = ops.shape.as_index(index)
        value = value if isinstance(value, Tensor) else Tensor(_as_array(value, self.dtype))
        if _grad_enabled.get() and (self.requires_grad or value.requires_grad):
            self._inplace(ops.shape.IndexPut, value, index=index)
        else:  # nothing to record: write straight into memory, no copy of the whole tensor
            self._data[index] = value._data
            self._version_counter.value += 1


def _operand(x: Tensor, other: Any) -> Any:
    """``other`` as the second operand of a binary op on ``x`` (a number takes x's dtype)."""
    return ops.elementwise.operands(x, other)[1]


def _refuse_inplace_in_graph(t: Tensor) -> None:
    """Refuse the in-place changes reverse mode cannot record (PyTorch refuses the first)."""
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation. "
            "Change it inside `with tinyres.no_grad():` (as optimizers do), or change a clone()."
        )
    if t._is_view:
        # PyTorch rewrites the history of the view's base; tinyres does not, and refuses
        # rather than give the base a stale gradient.
        raise RuntimeError(
            "an in-place operation on a view (reshape, slice, detach) is not recorded by tinyres "
            "autograd; write into the base tensor instead (base[index] = value), or clone() the view"
        )


def _seed_gradient(root: Tensor, gradient: Any) -> np.ndarray:
    """The gradient backward starts from: ones for a scalar, else ``gradient`` checked."""
    if not root.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    if gradient is None:
        if root._data.size != 1:
            raise RuntimeError(
                "grad can be implicitly created only for scalar outputs; "
                f"this tensor has shape {root.shape}, so pass gradient= of that shape"
            )
        return np.ones_like(root._data)
    seed = _as_array(gradient, dtype=root.dtype)
    if seed.shape != root.shape:
        raise RuntimeError(f"gradient has shape {seed.shape}, expected the tensor's shape {root.shape}")
    return seed


def _run_hooks(hooks: Any, grad: np.ndarray) -> np.ndarray:
    """Call each hook on ``grad``; a returned gradient replaces it if shape and dtype match.

    Checked here, before any op's backward (or a Numba kernel, which does not check
    bounds) sees the replacement.
    """
    for hook in hooks:
        replaced = hook(Tensor(grad))
        if replaced is None:
            continue
        new = replaced._data if isinstance(replaced, Tensor) else np.asarray(replaced)
        name = getattr(hook, "__name__", repr(hook))
        if new.shape != grad.shape:
            raise RuntimeError(
                f"hook '{name}' has changed the size of value (was {list(grad.shape)} got {list(new.shape)})"
            )
        if new.dtype != grad.dtype:
            raise RuntimeError(
                f"hook '{name}' has changed the type of value (was {grad.dtype} got {new.dtype})"
            )
        grad = new
    return grad


def _accumulate(leaf: Tensor, grad: np.ndarray) -> None:
    """Add ``grad`` into ``leaf.grad``.

    A copy, so .grad never aliases an array an op still holds; order="K" keeps the
    memory layout (a channels-last gradient stays so) instead of paying for a
    transposing copy.
    """
    total = grad.copy(order="K") if leaf.grad is None else leaf.grad._data + grad
    leaf.grad = Tensor(total)


def _input_gradients(fn: Function, grad: np.ndarray) -> Iterator[tuple[Function | Tensor, np.ndarray]]:
    """Run ``fn.backward`` after checking its saved tensors; yield (parent, gradient) pairs."""
    if fn.freed:
        raise RuntimeError(
            "Trying to backward through the graph a second time: its saved values were freed "
            "by the first backward(). Pass retain_graph=True to the first call if you need to."
        )
    for saved in fn.saved:
        saved.check()
    input_grads = fn.backward(grad)
    if len(input_grads) != len(fn.inputs):
        raise RuntimeError(
            f"{type(fn).__name__}.backward returned {len(input_grads)} gradients for {len(fn.inputs)} inputs"
        )
    for parent, inp, g in zip(fn.parents, fn.inputs, input_grads):
        if parent is not None and g is not None:
            yield parent, unbroadcast(np.asarray(g, dtype=inp.dtype), inp.shape)


def backpropagate(
    outputs: list[Tensor], gradients: list[Any], retain_graph: bool, inputs: list[Tensor] | None = None
) -> list[np.ndarray | None] | None:
    """The reverse-mode walk behind ``Tensor.backward`` and ``tinyres.autograd.grad``.

    Starts from each output with its gradient (``None``: ones for a one-element output)
    and visits the graph in reverse topological order (``_topological_order``: no
    recursion, so a chain of 10,000 ops is fine); each node's gradient is complete
    before it is passed on, even where the node is reused (``b = a + a``).

    Without ``inputs`` (``backward``) leaf gradients are added into ``.grad`` and
    ``retain_grad`` tensors get theirs. With ``inputs`` (``autograd.grad``) no ``.grad``
    is touched: the gradient reaching each input's node is returned, ``None`` where
    none arrived. Each op is released after its backward unless ``retain_graph``.
    """
    for out in outputs:
        _refuse_stale_view(out)
    grads: dict[int, np.ndarray] = {}
    for out, gradient in zip(outputs, gradients, strict=True):
        seed, root = _seed_gradient(out, gradient), _node(out)
        grads[id(root)] = grads[id(root)] + seed if id(root) in grads else seed
    wanted = None if inputs is None else {id(_node(t)) for t in inputs}
    captured: dict[int, np.ndarray] = {}
    for node in _topological_order(*(_node(out) for out in outputs)):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        grad = _run_hooks(node._hooks, grad)
        if wanted is not None and id(node) in wanted:
            captured[id(node)] = grad
        if isinstance(node, Tensor):
            if wanted is None:
                _accumulate(node, grad)
            continue
        if wanted is None and node.retained_by is not None:
            node.retained_by.grad = Tensor(grad.copy(order="K"))
        for parent, g in _input_gradients(node, grad):
            grads[id(parent)] = grads[id(parent)] + g if id(parent) in grads else g
        if not retain_graph:
            node.release()
    return None if inputs is None else [captured.get(id(_node(t))) for t in inputs]


def _walk(root: Tensor, seed: np.ndarray, retain_graph: bool) -> None:
    """The engine's own walk, ``WALK``'s default: ``backpropagate`` from one root."""
    backpropagate([root], [seed], retain_graph)


# The walk ``Tensor.backward`` runs, called as ``WALK.get()(root, seed_gradient, retain_graph)``.
# A ContextVar, so a ``with`` block in one thread (``tinyres.course.mine``) can run a learner's
# walk without changing what another thread's ``backward`` does.
WALK: contextvars.ContextVar[Callable[[Tensor, np.ndarray, bool], None]] = contextvars.ContextVar(
    "tinyres_backward_walk", default=_walk
)


def _topological_order(*roots: Function | Tensor) -> list[Function | Tensor]:
    """Graph nodes reachable from ``roots``, consumers first: ops (``Function``) and leaf tensors.

    An iterative depth-first search: each node is appended after all nodes it was
    computed from, so the reversed list visits every consumer of a node before the
    node itself, and its gradient is complete when its turn comes.
    """
    order: list[Function | Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Function | Tensor, bool]] = [(root, False) for root in reversed(roots)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if isinstance(node, Function):
            for parent in node.parents:
                if parent is not None and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()
    return order


# The ops build Tensors, so they import this module; importing them last breaks the cycle.
from tinyres import ops  # noqa: E402
