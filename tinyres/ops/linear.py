"""The fully connected layer's op: y = x W^T + b.

>>> import tinyres as tr
>>> x = tr.tensor([[1.0, 2.0]])
>>> w = tr.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
>>> linear(x, w, tr.tensor([0.0, 0.0, 10.0]))
tensor([[1., 3., 8.]], shape=(1, 3), dtype=float32)
"""

from __future__ import annotations

import numpy as np

from tinyres.engine import Function, Tensor
from tinyres.kernels.threads import matmul
from tinyres.ops.validate import check_float, check_tensor


class Addmm(Function):
    r"""y = x W^T + b for x of shape (..., in), W (out, in), b (out,).

    With the leading axes of x flattened into rows X (M, in) and dY (M, out):
    dX = dY W,  dW = dY^T X,  db = sum of dY over the rows. The products run on tinyres's
    threads (``kernels.threads.matmul``), not on BLAS's own.
    """

    saved_inputs = ((1,), (0,))  # dW reads x, dx reads W

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        self.x, self.w, self.has_bias = x, w, b is not None
        y = matmul(x, w.T)
        if b is not None:
            y += b  # y is this op's own new array
        return y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rows = grad.reshape(-1, grad.shape[-1])
        dw = matmul(rows.T, self.x.reshape(-1, self.x.shape[-1]))
        db = rows.sum(axis=0) if self.has_bias else None
        return matmul(grad, self.w), dw, db


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Apply y = x W^T + b; x is (..., in_features), W is (out_features, in_features)."""
    check_tensor("linear", input=input, weight=weight, bias=bias)
    x, w = input._data, weight._data
    check_float("linear", x, w, None if bias is None else bias._data)
    if w.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {w.shape}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear: input has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}), "
            f"weight expects {w.shape[1]} (weight shape {w.shape})"
        )
    if bias is not None and bias.shape != (w.shape[0],):
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({w.shape[0]},)")
    return Addmm.apply(input, weight, bias)
