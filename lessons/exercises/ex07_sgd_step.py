"""Exercise 7 (lesson 04): one step of SGD with momentum and weight decay, PyTorch's form.

For a parameter p, its gradient g, learning rate lr, momentum m and weight decay wd,
PyTorch's ``torch.optim.SGD`` documents its update; reproduce it exactly: weight decay is
the gradient of (wd / 2) |p|^2, the momentum buffer starts as the first step's gradient,
and the learning rate is applied where PyTorch applies it (it matters once lr changes
during training). Leave p, g and the buffer you are given unchanged: return new arrays.

Check your work: ``tinyres check ex07``.
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
