"""``tinyres.autograd``: what programs import from ``torch.autograd``.

``grad`` returns gradients instead of adding them into ``.grad``. ``Variable`` is the
pre-2018 wrapper that PyTorch 2 keeps as a thin alias: it returns a Tensor. The engine
itself is in ``tinyres.engine``.

>>> import tinyres as torch
>>> from tinyres.autograd import Variable
>>> x = Variable(torch.ones(2), requires_grad=True)
>>> type(x).__name__, x.requires_grad
('Tensor', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tinyres.engine import Function, Tensor, backpropagate, no_grad


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


__all__ = ["Function", "Variable", "grad", "no_grad"]
