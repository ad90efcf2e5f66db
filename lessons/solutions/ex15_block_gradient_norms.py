r"""Exercise 15 (lesson 10): per-block gradient norms, measured with tensor hooks.

For a stack of blocks h_{l+1} = block_l(h_l) and a loss L, the norm

.. math::  \Big\| \frac{\partial L}{\partial h_l} \Big\|_2 = \sqrt{\textstyle\sum (\partial L/\partial h_l)^2}

of the gradient reaching each block's input shows whether the gradient vanishes on its
way back. ``t.register_hook(fn)`` calls ``fn(grad)`` when t's gradient is computed,
during ``backward``, without keeping the gradient afterwards. Hooks fire in the order
backward reaches the tensors: last block first.

Check your work: ``tinyres check ex15``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import tinyres.nn as nn
from tinyres import Tensor


def block_gradient_norms(
    blocks: nn.Sequential, x: Tensor, loss_fn: Callable[[Tensor], Tensor]
) -> list[float]:
    """|dL/d(input of block l)| for each block, first block first, with L = loss_fn(blocks(x)).

    ``x`` requires grad. Run the blocks one at a time, hook each block's input, call
    ``backward`` once, and return the norms (Python floats, summed in float64).
    """
    norms: dict[int, float] = {}
    h = x
    for index, block in enumerate(blocks):
        h.register_hook(lambda g, i=index: norms.__setitem__(i, float(np.sqrt(np.sum(g.numpy() ** 2.0)))))
        h = block(h)
    loss_fn(h).backward()
    return [norms[i] for i in range(len(norms))]
