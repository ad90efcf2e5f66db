"""The autograd core: the reverse-mode walk, ``Function``, version counters and ``Tensor``'s state.

A ``Tensor`` wraps a NumPy array. Every differentiable operation is a ``Function``
subclass with a ``forward`` on arrays and, next to it, a ``backward`` that turns the
gradient of the output into gradients of the inputs (the vector-Jacobian product).
``SomeFunction.apply(*tensors)`` runs ``forward`` and records the call for ``backward``.

Read top to bottom: the walk, then ``Function`` and version counters, then ``Tensor``'s
core (data, ``requires_grad``, hooks, ``backward``). Operators, the methods that call
``tinyres.ops``, in-place ops and conversions are in ``tinyres/tensor_api.py``; grad mode
in ``tinyres/grad_mode.py``. This file imports neither ``tinyres.ops`` nor ``tinyres.nn``.

>>> import tinyres as tr
>>> a = tr.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> b = (a * a).sum()
>>> b.backward()
>>> a.grad
tensor([2., 4., 6.], shape=(3,), dtype=float32)
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from tinyres.grad_mode import is_grad_enabled
from tinyres.grad_mode import no_grad as no_grad  # re-exported: many modules import it from here
from tinyres.hooks import RemovableHandle, add_hook
from tinyres.plumbing import Size, refuse_half


# ---- the reverse-mode walk --------------------------------------------------------------
def backpropagate(
    outputs: list[Tensor], gradients: list[Any], retain_graph: bool, inputs: list[Tensor] | None = None
) -> list[np.ndarray | None] | None:
    """The reverse-mode walk behind ``Tensor.backward`` and ``tinyres.autograd.grad``.

    Starts from each output with its gradient (``None``: ones for a one-element output)
    and visits the graph in reverse topological order, so each node's gradient is
    complete before it is passed on, even where the node is reused (``b = a + a``).
    Without ``inputs`` (``backward``) leaf gradients are added into ``.grad`` (and
    ``retain_grad`` tensors get theirs); with ``inputs`` (``autograd.grad``) the gradient
    reaching each input is returned instead, ``None`` where none arrived. Each op is
    released after its backward unless ``retain_graph``.
    """
    grads: dict[int, np.ndarray] = {}
    sums: set[int] = set()  # the nodes whose waiting gradient is a sum the walk made
    for out, gradient in zip(outputs, gradients, strict=True):
        _add_into(grads, sums, id(_node(out)), _seed_gradient(out, gradient))
    wanted = None if inputs is None else {id(_node(t)) for t in inputs}
    captured: dict[int, np.ndarray] = {}
    for node in _topological_order(*(_node(out) for out in outputs)):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        grad = _run_hooks(node._hooks.values(), grad) if node._hooks else grad
        if wanted is not None and id(node) in wanted:
            captured[id(node)] = grad
        if isinstance(node, Tensor):
            if wanted is None:
                _accumulate(node, grad)
            continue
        if wanted is None and node.retained_by is not None:
            node.retained_by.grad = Tensor(grad.copy(order="K"))
        for parent, g in _input_gradients(node, grad):
            _add_into(grads, sums, id(parent), g)
        if not retain_graph:
            node.release()
    return None if inputs is None else [captured.get(id(_node(t))) for t in inputs]


def walk(root: Tensor, seed: np.ndarray, retain_graph: bool) -> None:
    """The engine's own walk for ``Tensor.backward``: ``backpropagate`` from one root."""
    backpropagate([root], [seed], retain_graph)


# The function ``Tensor.backward`` walks the graph with, called as
#     WALK.get()(root, seed, retain_graph) -> None
# root: the Tensor backward was called on; seed: an ndarray of dLoss/droot, already checked
# to have root's shape and dtype; retain_graph: keep the ops' saved values for another
# backward. It must add each leaf's gradient into its ``.grad``. The course's "use the
# learner's own code" mode sets it to the learner's walk. A ContextVar, so a ``WALK.set``
# in one thread (or asyncio task) does not change the walk of another.
WALK: contextvars.ContextVar[Callable[[Tensor, np.ndarray, bool], None]] = contextvars.ContextVar(
    "WALK", default=walk
)


def _topological_order(*roots: Function | Tensor) -> list[Function | Tensor]:
    """Graph nodes reachable from ``roots``, consumers first: ops (``Function``) and leaf tensors.

    An iterative depth-first search (no recursion: a chain of 10,000 ops is fine); each
    node is appended after the nodes it was computed from, and the list is reversed.
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


def _seed_gradient(root: Tensor, gradient: Any) -> np.ndarray:
    """The gradient backward starts from: ones for a scalar, else ``gradient`` checked."""
    _refuse_stale_view(root)
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


def _add_into(grads: dict[int, np.ndarray], sums: set[int], key: int, g: np.ndarray) -> None:
    """Add ``g`` to the gradient waiting for node ``key``: the first is kept as it is, the second
    makes a new array (the sum), later ones are added into it in place. Only a sum the walk
    made is written (nothing else sees it before its node runs); an arriving gradient may be
    an op's saved array or also go to another node (``Add`` sends one array to both inputs).
    """
    if key not in grads:
        grads[key] = g
        sums.discard(key)
    elif key in sums:
        np.add(grads[key], g, out=grads[key])
    else:  # out=: a new array even for 0-d gradients, where ``a + b`` gives a NumPy scalar
        grads[key] = np.add(grads[key], g, out=np.empty_like(grads[key]))
        sums.add(key)


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
            raise RuntimeError(f"hook '{name}' has changed the size of value "
                               f"(was {list(grad.shape)} got {list(new.shape)})")
        if new.dtype != grad.dtype:
            raise RuntimeError(f"hook '{name}' has changed the type of value "
                               f"(was {grad.dtype} got {new.dtype})")
        grad = new
    return grad


def _accumulate(leaf: Tensor, grad: np.ndarray) -> None:
    """Add ``grad`` into ``leaf.grad``, then call the leaf's post-accumulate-grad hooks.

    A copy, so .grad never aliases an array an op still holds; order="K" keeps the
    memory layout (a channels-last gradient stays so) instead of paying for a
    transposing copy.
    """
    total = grad.copy(order="K") if leaf.grad is None else leaf.grad._data + grad
    leaf.grad = Tensor(total)
    for hook in leaf._post_accumulate_hooks.values():
        if hook(leaf) is not None:
            raise RuntimeError("Tensor post accumulate grad hooks should return None.")


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
        raise RuntimeError(f"{type(fn).__name__}.backward returned {len(input_grads)} gradients "
                           f"for {len(fn.inputs)} inputs")
    for parent, inp, g in zip(fn.parents, fn.inputs, input_grads):
        if parent is not None and g is not None:
            data = inp._data  # not .dtype and .shape: properties, and a Size made per call
            yield parent, unbroadcast(np.asarray(g, dtype=data.dtype), data.shape)


# ---- version counters: what makes an in-place change after forward an error ---------------
class VersionCounter:
    """How many times a tensor's memory was modified in place: one counter per block of memory.

    A view (``reshape``, ``x[0]``, ``detach()``) shares its base's counter, so a change made
    through any of them is seen by all; ``.data`` gets a fresh one, as in PyTorch.
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


# ---- Function: one differentiable operation -----------------------------------------------
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
    # The output tensor's hooks; replaced by add_hook, never mutated, so one empty default serves all.
    _hooks: dict[int, Callable[[Tensor], Tensor | None]] = {}  # noqa: RUF012
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
        fn, arrays, any_requires_grad = cls(), [], False
        for a in args:  # one pass: this runs for every op of every step
            if isinstance(a, Tensor):
                _refuse_stale_view(a)
                arrays.append(a._data)
                any_requires_grad = any_requires_grad or a._requires_grad
            else:
                arrays.append(a)
        out = fn.forward(*arrays, **kwargs)
        needs_grad = any_requires_grad and is_grad_enabled()
        result = Tensor(out, requires_grad=needs_grad)
        _share_counter_with_base(result, args)
        if needs_grad:
            fn.inputs = args
            fn.parents = tuple(map(_node, args))
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


# ---- Tensor: the state autograd needs ---------------------------------------------------
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
    called ``retain_grad``). The methods below are the autograd core; operators and
    the rest of PyTorch's methods are attached by ``tinyres/tensor_api.py``.
    """

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
        self._hooks: dict[int, Callable[[Tensor], Tensor | None]] = {}  # a leaf's; see register_hook
        self._post_accumulate_hooks: dict[int, Callable[[Tensor], None]] = {}
        self._version_counter = VersionCounter()
        self._is_view = False  # shares memory (and the counter) with another tensor
        self._view_version = 0  # the counter's value when the view was taken
        self.requires_grad = requires_grad

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self._data.dtype.kind not in "fc":
            raise RuntimeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        if not value and self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be turned off on a leaf; use .detach() instead")
        self._requires_grad = bool(value)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def data(self) -> Tensor:
        """A Tensor sharing this one's memory, cut off from the graph (``torch``'s ``.data``): it has
        its own version counter, so autograd does not see changes made through it (``detach()`` does)."""
        return Tensor(self._data)

    @data.setter
    def data(self, value: Any) -> None:
        self._data = _as_array(value)

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's memory has seen (PyTorch's ``_version``)."""
        return self._version_counter.value

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data (and its version counter), cut off from the graph."""
        out = Tensor(self._data)
        out._version_counter, out._is_view = self._version_counter, True
        return out

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after ``backward``."""
        if self.grad_fn is not None:
            self.grad_fn.retained_by = self

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; returns a handle.

        A hook that returns a tensor replaces the gradient, as in PyTorch; it must keep
        the gradient's shape and dtype. On a non-leaf the hook belongs to the op that
        made the tensor, so after an in-place change it still sees the gradient of the
        value it was registered on (PyTorch's rule).
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        return add_hook(self if self.grad_fn is None else self.grad_fn, "_hooks", hook)

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> RemovableHandle:
        """Call ``hook(self)`` each time ``backward`` has added into this leaf's ``.grad``.

        As in PyTorch: leaves only, the hook returns None, ``autograd.grad`` (which
        leaves ``.grad`` alone) does not call it. Data-parallel training uses it to start
        reducing a gradient as soon as it is complete.
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        return add_hook(self, "_post_accumulate_hooks", hook)

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        The seed gradient is checked here; the graph is walked by ``WALK``'s function
        (``walk`` above, unless replaced) and freed unless ``retain_graph``.
        """
        WALK.get()(self, _seed_gradient(self, gradient), retain_graph)
