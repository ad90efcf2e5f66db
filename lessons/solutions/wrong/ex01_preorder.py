"""Planted mistake for ex01 (ex01_backward.py): the grader must fail it.

The order is a depth-first pre-order: a tensor used twice can be reached before its
second consumer, and passes on an incomplete gradient.

Exercise 1 (lesson 01): reverse-mode ``backward`` over tinyres's graph, in topological order.

Every tensor an op made has ``grad_fn``, the ``Function`` that made it; ``grad_fn.inputs``
holds the op's inputs (tensors, or plain numbers and arrays) and ``grad_fn.backward(g)``
turns the gradient ``g`` of the output into one gradient (an array, or ``None``) per input:
the vector-Jacobian products. A leaf has ``grad_fn is None``.

Check your work: ``tinyres check ex01``.
"""

from __future__ import annotations

import numpy as np

from tinyres import Tensor
from tinyres.engine import unbroadcast

# The property the grader must fail (tests/test_grading.py checks that it does):
EXPECTED_FAILURE = "every tensor before its inputs"


def topological_order(root: Tensor) -> list[Tensor]:
    """Every tensor ``root`` depends on that requires grad, once each, each before its inputs.

    ``root`` comes first and the leaves come after everything that uses them, so that a
    walk down the list reaches a tensor only when every consumer has sent its gradient.
    Use an explicit stack, not recursion: a chain of 10,000 ops must work.
    """
    order: list[Tensor] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)  # MISTAKE: pre-order; a reused tensor may precede one of its consumers
        if node.grad_fn is not None:
            stack.extend(t for t in node.grad_fn.inputs if isinstance(t, Tensor) and t.requires_grad)
    return order


def backward(root: Tensor) -> None:
    """Add d(root)/d(leaf) to every leaf's ``.grad`` (a Tensor; ``None`` until the first time).

    ``root`` is a one-element tensor, so its own gradient is 1. Walk
    ``topological_order(root)``; at each node call ``grad_fn.backward(grad)`` and add
    each input's gradient, reduced to the input's shape with ``unbroadcast``, to what
    that input has collected so far:

        dL/d(input) = sum over the node's consumers of their vector-Jacobian products
    """
    grads = {id(root): np.ones(root.shape, dtype=root.dtype)}
    for node in topological_order(root):
        grad = grads.pop(id(node))
        if node.grad_fn is None:
            node.grad = Tensor(grad.copy()) if node.grad is None else Tensor(node.grad.numpy() + grad)
            continue
        for inp, g in zip(node.grad_fn.inputs, node.grad_fn.backward(grad)):
            if g is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                continue
            g = unbroadcast(np.asarray(g, dtype=inp.dtype), inp.shape)
            grads[id(inp)] = grads[id(inp)] + g if id(inp) in grads else g
