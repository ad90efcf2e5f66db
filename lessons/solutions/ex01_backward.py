"""Exercise 1 (lesson 01): reverse-mode ``backward`` over tinyres's graph, in topological order.

The graph's nodes are the ops and the leaves. Every tensor an op made has ``grad_fn``,
the ``Function`` that made it; ``grad_fn.parents`` holds the node of each of its inputs
*as it was when the op ran* (that input's ``grad_fn``, the leaf tensor itself, or
``None`` where no gradient is wanted), ``grad_fn.inputs`` the inputs themselves, and
``grad_fn.backward(g)`` turns the gradient ``g`` of the output into one gradient (an
array, or ``None``) per input: the vector-Jacobian products. A leaf has ``grad_fn is None``.

Key everything by node, not by tensor: after ``out = x * 3; out += x`` the Tensor object
``out`` has a new ``grad_fn`` (the addition), whose parents are the multiplication (out's
old value) and x. The engine gives x.grad = [4, 4] for ``out.sum()``, and so must you.

Check your work: ``tinyres check ex01``.
"""

from __future__ import annotations

import numpy as np

from tinyres import Tensor
from tinyres.engine import Function, unbroadcast

Node = Function | Tensor  # an op, or a leaf tensor


def topological_order(root: Tensor) -> list[Node]:
    """Every node ``root`` depends on, once each, each before the nodes it was computed from.

    The first node is root's: ``root.grad_fn`` (or root, if it is a leaf). A node comes
    before its parents, so that a walk down the list reaches a node only when every
    consumer has sent its gradient. Use an explicit stack, not recursion: a chain of
    10,000 ops must work.
    """
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root if root.grad_fn is None else root.grad_fn, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:  # every parent is already in ``order``: post-order
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if isinstance(node, Function):
            for parent in node.parents:
                if parent is not None and id(parent) not in seen:
                    stack.append((parent, False))
    return order[::-1]  # post-order puts parents first; reversed, every node precedes its parents


def backward(root: Tensor) -> None:
    """Add d(root)/d(leaf) to every leaf's ``.grad`` (a Tensor; ``None`` until the first time).

    ``root`` is a one-element tensor; its own gradient is 1, in root's dtype. Walk
    ``topological_order(root)``; at each op call ``backward(grad)`` and add each input's
    gradient, reduced to the input's shape with ``unbroadcast`` and in the input's dtype,
    to what that input's node has collected so far. A leaf adds what it collected to the
    ``.grad`` it already has, as PyTorch does (backward twice gives twice the gradient).
    """
    order = topological_order(root)
    grads = {id(order[0]): np.ones(root.shape, dtype=root.dtype)}
    for node in order:
        grad = grads.pop(id(node), None)
        if grad is None:  # no path from the root reaches it with a gradient
            continue
        if isinstance(node, Tensor):  # a leaf: accumulate into what it already has
            node.grad = Tensor(grad.copy()) if node.grad is None else Tensor(node.grad.numpy() + grad)
            continue
        for parent, inp, g in zip(node.parents, node.inputs, node.backward(grad)):
            if parent is None or g is None:
                continue
            g = unbroadcast(np.asarray(g, dtype=inp.dtype), inp.shape)
            grads[id(parent)] = grads[id(parent)] + g if id(parent) in grads else g
