r"""Exercise 6 (lesson 04): softmax cross-entropy, its loss and its gradient, in NumPy.

For logits x of shape (N, C) and class indices t of shape (N,),

.. math::  \mathrm{loss} = \frac{1}{N}\sum_n -\log \mathrm{softmax}(x_n)_{t_n}, \qquad
           \frac{\partial\,\mathrm{loss}}{\partial x_n}
           = \frac{1}{N}\big(\mathrm{softmax}(x_n) - \mathrm{onehot}(t_n)\big)

Subtract each row's maximum before exponentiating: softmax does not change, and
logits of 1e4 no longer overflow.

Check your work: ``tinyres check ex06``.
"""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Return (mean loss, dloss/dlogits) for logits (N, C) and integer targets (N,)."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), target].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), target] -= 1
    return float(loss), grad / n
