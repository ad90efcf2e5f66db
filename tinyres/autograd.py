"""``tinyres.autograd``: what programs import from ``torch.autograd``.

``Function`` is PyTorch's custom-function protocol, so a custom op written for PyTorch
runs unchanged: ``@staticmethod forward(ctx, *args)`` computes on Tensors (gradients are
not recorded inside it), ``@staticmethod backward(ctx, *grads)`` returns one gradient (or
``None``) per argument of ``forward``, and ``ctx`` carries what backward needs:
``save_for_backward``/``saved_tensors`` (reading a saved tensor changed in place since
raises PyTorch's RuntimeError), ``needs_input_grad`` and ``mark_non_differentiable``.
A wrong number of gradients, or one whose shape does not reduce to its input's, is
refused with PyTorch's message. One Tensor output per op, as every tinyres op has.

Why the built-in ops keep the engine's own base (``tinyres.engine.Function``, arrays in
and out, ``saved_inputs``/``saves_output`` declared on the class): their kernels work on
NumPy arrays, and wrapping every array in a Tensor and back on each call would add a
layer a learner must read through in all sixty ops; the class-level declarations also
let the engine save an input only when a gradient that reads it is wanted, which
``save_for_backward`` (called inside forward, before anyone asks) cannot know. This
class is a thin adapter that runs on that base: the engine sees one node per call, whose
backward calls yours, so the walk, hooks and version counters are the same code.

``grad`` returns gradients instead of adding them into ``.grad``. ``Variable`` is the
pre-2018 wrapper that PyTorch 2 keeps as a thin alias: it returns a Tensor. The engine
itself is in ``tinyres.engine``.

>>> import tinyres as torch
>>> class Square(torch.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x * x
...     @staticmethod
...     def backward(ctx, grad):
...         (x,) = ctx.saved_tensors
...         return 2 * x * grad
>>> x = torch.tensor([1.0, -3.0], requires_grad=True)
>>> Square.apply(x).sum().backward()
>>> x.grad
tensor([ 2., -6.], shape=(2,), dtype=float32)

>>> import tinyres as torch
>>> from tinyres.autograd import Variable
>>> x = Variable(torch.ones(2), requires_grad=True)
>>> type(x).__name__, x.requires_grad
('Tensor', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyres.engine import Function as _EngineFunction
from tinyres.engine import SavedVersion, Tensor, _saved, backpropagate, is_grad_enabled, no_grad


class FunctionCtx:
    """The ``ctx`` that ``forward`` and ``backward`` share (PyTorch's ``FunctionCtx``).

    Attributes set on it by ``forward`` are there for ``backward`` too; tensors that
    backward reads go through ``save_for_backward``, which records their versions.
    """

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.needs_input_grad = needs_input_grad
        self._to_save: tuple[Any, ...] = ()
        self._saved: tuple[tuple[Any, SavedVersion | None], ...] | None = None
        self._non_differentiable: list[Tensor] = []

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        """Keep ``tensors`` (inputs, outputs or ``None``) for backward; call it once, in forward."""
        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(
                    f"save_for_backward can only save variables, but argument {i} is of type "
                    f"{type(t).__name__}"
                )
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        """What ``save_for_backward`` kept; RuntimeError if one was changed in place since."""
        if self._saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Saved intermediate values of the "
                "graph are freed when you call .backward() or autograd.grad(). Specify "
                "retain_graph=True if you need to backward through the graph a second time or "
                "if you need to access saved tensors after calling backward."
            )
        for _, version in self._saved:
            if version is not None:
                version.check()
        return tuple(t for t, _ in self._saved)

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        """Mark outputs that have no gradient (indices, masks): they do not require grad."""
        self._non_differentiable.extend(tensors)

    def set_materialize_grads(self, value: bool) -> None:
        """Accepted for PyTorch code; tinyres always passes a gradient array (never None)."""


class _CustomBackward(_EngineFunction):
    """The engine node of one ``Function.apply`` call: its backward calls the user's."""

    def forward(self, *arrays: Any, output: np.ndarray, ctx: FunctionCtx, user: type[Function]) -> np.ndarray:
        self.ctx, self.user = ctx, user
        return output  # already computed by the user's forward

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        name = f"{self.user.__name__}Backward"
        with no_grad():
            grads = self.user.backward(self.ctx, Tensor(grad))
        grads = grads if isinstance(grads, tuple) else (grads,)
        n = len(self.inputs)
        if len(grads) < n or any(g is not None for g in grads[n:]):
            raise RuntimeError(
                f"function {name} returned an incorrect number of gradients (expected {n}, got {len(grads)})"
            )
        arrays: list[np.ndarray | None] = []
        for i, (inp, g) in enumerate(zip(self.inputs, grads)):
            if g is not None and not isinstance(g, Tensor):
                raise RuntimeError(f"expected Variable or None (got {type(g).__name__})")
            if g is not None and not isinstance(inp, Tensor):
                raise RuntimeError(
                    f"function {name} returned a gradient different than None at position {i + 1}, "
                    "but the corresponding forward input was not a Variable"
                )
            if g is not None and not _expandable(inp.shape, g.shape):
                raise RuntimeError(
                    f"Function {name} returned an invalid gradient at index {i} - got {list(g.shape)} "
                    f"but expected shape compatible with {list(inp.shape)}"
                )
            arrays.append(None if g is None else g._data)
        return tuple(arrays)

    def release(self) -> None:
        self.ctx._saved = None  # saved_tensors after the graph is freed: PyTorch's error
        super().release()

    def __repr__(self) -> str:
        return f"<{self.user.__name__}Backward>"


def _expandable(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to ``to`` (then the gradient is summed back to ``shape``)."""
    try:
        return np.broadcast_shapes(shape, to) == tuple(to)
    except ValueError:
        return False


class Function:
    """A custom differentiable op in PyTorch's protocol (``torch.autograd.Function``).

    Subclass it with two static methods and call ``YourOp.apply(*args)``:

    - ``forward(ctx, *args, **kwargs)``: compute the output Tensor from the arguments
      (Tensors, numbers, anything); no graph is recorded inside it.
    - ``backward(ctx, grad)``: the gradient of each positional argument of ``forward``
      (a Tensor of its shape, or one that broadcasts to it; ``None`` for no gradient).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Tensor:
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx: FunctionCtx, *grads: Tensor) -> Any:
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run ``forward`` and, if a Tensor argument requires grad, record the call for backward."""
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = FunctionCtx(needs)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        if not isinstance(out, Tensor):
            raise TypeError(
                f"{cls.__name__}.forward must return one Tensor (tinyres ops have one output), "
                f"got {type(out).__name__}"
            )
        record = is_grad_enabled() and any(needs) and out.dtype.kind == "f"
        if not record or any(t is out for t in ctx._non_differentiable):
            ctx._saved = tuple((t, None) for t in ctx._to_save)
            return out
        result = _CustomBackward.apply(*args, output=out._data, ctx=ctx, user=cls)
        if not result._is_view:
            # ``out`` was made inside forward: the result is the same memory, one counter,
            # so an in-place change to the returned tensor is seen by a saved ``out``.
            result._version_counter = out._version_counter
        # Saved now, after forward: their versions as backward must find them.
        kept = [result if t is out else t for t in ctx._to_save]  # backward sees the returned tensor
        ctx._saved = tuple((t, None if t is None else _saved(t)) for t in kept)
        return result


def Variable(data: Any, requires_grad: bool = False, volatile: bool = False) -> Tensor:
    """``data`` as a Tensor (the same one if it is a Tensor); ``requires_grad`` is set on it
    when asked for. ``volatile`` is accepted and ignored, as in PyTorch 2 (use ``no_grad``)."""
    tensor = data if isinstance(data, Tensor) else Tensor(data)
    if requires_grad:
        tensor.requires_grad_(True)
    return tensor


def _as_list(tensors: Tensor | Sequence[Tensor], what: str) -> list[Tensor]:
    items = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: {what}[{i}] must be a Tensor, got {type(t).__name__}")
    return items


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """d(outputs)/d(inputs) as a tuple with one Tensor per input (``torch.autograd.grad``).

    The vector-Jacobian product sum_k grad_outputs[k] . d outputs[k] / d input, computed
    by the same walk as ``backward``, but no ``.grad`` is changed. ``grad_outputs`` may
    be left out (or an entry None) for one-element outputs. An input the outputs do not
    depend on is an error unless ``allow_unused``, and then its entry is None.
    ``retain_graph`` defaults to ``create_graph``, as in PyTorch; ``create_graph=True``
    (a graph of the gradient, for second derivatives) is not supported.

    >>> import tinyres as torch
    >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> torch.autograd.grad((x * x).sum(), x)
    (tensor([2., 4.], shape=(2,), dtype=float32),)
    >>> x.grad is None
    True
    """
    if create_graph:
        raise RuntimeError(
            "grad: create_graph=True is not supported by tinyres (its backward passes do not "
            "record a graph, so there are no second derivatives); call it with create_graph=False"
        )
    outputs, inputs = _as_list(outputs, "outputs"), _as_list(inputs, "inputs")
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: inputs[{i}] does not require grad")
    found = backpropagate(outputs, grad_outputs, bool(retain_graph), inputs)
    for i, g in enumerate(found):
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: inputs[{i}] appears to not have been used in the graph; "
                "pass allow_unused=True if this is intended (its gradient is then None)"
            )
    return tuple(None if g is None else Tensor(g.copy(order="K")) for g in found)


__all__ = ["Function", "FunctionCtx", "Variable", "grad", "no_grad"]
