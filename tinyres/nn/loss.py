"""Losses: ``CrossEntropyLoss`` (softmax cross-entropy between logits and class indices),
``NLLLoss`` (after ``log_softmax``) and ``MSELoss``.

For logits z of shape (N, K) and targets y of shape (N,) with values in [0, K),

    loss_i = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_i[y_i],

averaged over the batch (``reduction="mean"``), summed (``"sum"``) or returned per
sample (``"none"``). The math and its gradient, ``softmax(z) - onehot(y)``, are in
``functional.cross_entropy``.

>>> import tinyres as tr
>>> from tinyres import nn
>>> loss = nn.CrossEntropyLoss()(tr.zeros(2, 4), tr.tensor([1, 3]))
>>> round(loss.item(), 4)   # uniform logits: log 4
1.3863
"""

from __future__ import annotations

from tinyres.engine import Tensor
from tinyres.nn import functional as F
from tinyres.nn.module import Module
from tinyres.ops.loss import REDUCTIONS


class CrossEntropyLoss(Module):
    """``loss = CrossEntropyLoss()(logits, targets)``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"CrossEntropyLoss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, reduction=self.reduction)


class NLLLoss(CrossEntropyLoss):
    """``loss = NLLLoss()(log_probabilities, targets)``: -log_probabilities[n, target_n]."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, reduction=self.reduction)


class MSELoss(CrossEntropyLoss):
    """``loss = MSELoss()(prediction, target)``: the mean squared error."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)
