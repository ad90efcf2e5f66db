r"""Exercise 20 (lesson 07): a residual block's Jacobian, measured without side effects.

Lesson 7 builds a Jacobian row by row with ``backward``, one output element at a time.
That ``backward`` also adds into every parameter's ``.grad`` (and into ``x.grad``): used
inside a training step, it would change the next update. Measure it again, in training
mode across a whole batch (where batch norm couples the images, so the Jacobian is not
block-diagonal), leaving every ``.grad`` as you found it: ``tinyres.autograd.grad``
returns the gradient with respect to the inputs you name and touches no ``.grad``.

J[k, j] = d out.flat[k] / d x.flat[j], a (out.numel(), x.numel()) array in x's dtype.
The block runs once per row (its running statistics move each time: that is allowed).

Check your work: ``tinyres check ex20``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import tinyres as tr


def block_jacobian(block: Callable[[tr.Tensor], tr.Tensor], x: tr.Tensor) -> np.ndarray:
    """d block(x) / dx as a (outputs, inputs) matrix, no ``.grad`` changed; x requires grad."""
    raise NotImplementedError
