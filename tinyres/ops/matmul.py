"""Matrix product with NumPy's ``@`` semantics (batched, 1-d operands allowed)."""

from __future__ import annotations

import numpy as np

from tinyres.engine import Function, Tensor
from tinyres.kernels.threads import matmul as product
from tinyres.pieces import learner


class MatMul(Function):
    """Z = X @ Y;  dL/dX = G @ Y^T,  dL/dY = X^T @ G.

    1-d operands are promoted to matrices for the backward (as NumPy does for the
    forward) and the extra axis is dropped again; batch axes that broadcasting
    added are summed by the engine. The products run on tinyres's threads
    (``kernels.threads.matmul``), not on BLAS's own.
    """

    saved_inputs = ((1,), (0,))

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        self.x, self.y = x, y
        return product(x, y)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.x[None, :] if self.x.ndim == 1 else self.x
        y = self.y[:, None] if self.y.ndim == 1 else self.y
        if self.x.ndim == 1:
            grad = np.expand_dims(grad, -2)
        if self.y.ndim == 1:
            grad = np.expand_dims(grad, -1)
        dx = product(grad, np.swapaxes(y, -1, -2))
        dy = product(np.swapaxes(x, -1, -2), grad)
        if self.x.ndim == 1:
            dx = dx.reshape(dx.shape[:-2] + dx.shape[-1:])
        if self.y.ndim == 1:
            dy = dy.reshape(dy.shape[:-1])
        return dx, dy


def matmul(x: Tensor, y: Tensor) -> Tensor:
    x = x if isinstance(x, Tensor) else Tensor(x)
    y = y if isinstance(y, Tensor) else Tensor(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("matmul needs tensors of at least one dimension, got a scalar")
    inner_x = x.shape[-1]
    inner_y = y.shape[0] if y.ndim == 1 else y.shape[-2]
    if inner_x != inner_y:
        raise ValueError(
            f"matmul: shapes {x.shape} and {y.shape} cannot be multiplied "
            f"({inner_x} != {inner_y})"
        )
    if x.dtype != y.dtype:
        raise TypeError(f"matmul: operands have different dtypes: {x.dtype} and {y.dtype}")
    mine = learner("MatMul")  # the learner's ex04 inside tinyres.course.mine: 2-d operands only
    if mine is not None and x.ndim == 2 and y.ndim == 2:
        return mine.apply(x, y)
    return MatMul.apply(x, y)
