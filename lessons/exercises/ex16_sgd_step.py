"""Exercise 16 (lesson 11): one step of SGD with momentum and weight decay, PyTorch's form.

For a parameter p, its gradient g, learning rate lr, momentum m and weight decay wd:

    g = g + wd * p              # weight decay first: the gradient of (wd / 2) |p|^2
    b = g                       # the momentum buffer, on the first step
    b = m * b + g               # on later steps
    p = p - lr * b

The learning rate multiplies the whole buffer at each step (not each gradient as it
enters the buffer), which matters when lr changes during training.

Check your work: ``tinyres check ex16``.
"""

from __future__ import annotations

import numpy as np


def sgd_step(
    p: np.ndarray, g: np.ndarray, buffer: np.ndarray | None, lr: float, momentum: float, weight_decay: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (the new p, the new buffer); ``buffer`` is None on the first step.

    With momentum 0 there is no buffer: return None for it.
    """
    raise NotImplementedError
