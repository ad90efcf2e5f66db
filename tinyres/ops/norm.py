"""Batch normalisation as a differentiable op, with PyTorch's ``F.batch_norm`` signature.

The math and the compact backward are in ``tinyres.kernels.batchnorm_reference``; the
``"numba"`` tier runs the same formulas as compiled loops
(``tinyres.kernels.batchnorm_numba``). This file validates, picks the kernels
(``tinyres.kernels.select``), and keeps the running statistics.

>>> import numpy as np
>>> import tinyres as tr
>>> x = tr.tensor(np.arange(8.0).reshape(2, 2, 2, 1))
>>> mean, var = np.zeros(2), np.ones(2)
>>> y = batch_norm(x, mean, var, training=True, momentum=0.5)
>>> mean, var   # half the old value plus half the batch's (var unbiased: 17/3)
(array([1.25, 2.25]), array([3.33333333, 3.33333333]))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres import kernels
from tinyres.engine import Function, Tensor
from tinyres.ops.validate import check_float, check_ndim


class BatchNorm(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta per channel (axis 1).

    Training mode uses the batch's mean and biased variance and updates the running
    buffers in place; eval mode uses the running buffers. ``gamma``/``beta`` may be
    None (no affine transform), and then get no gradient. Backward reads x and gamma,
    never y, so ``y += identity`` (a residual add) may change y in place, as in PyTorch.
    """

    saved_inputs = ((0, 1, 2), (0, 1, 2))
    family = "batch_norm"  # the kernel family; BatchNormReLU's differs

    def forward(
        self,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        *,
        running_mean: np.ndarray | None,
        running_var: np.ndarray | None,
        training: bool,
        momentum: float,
        eps: float,
    ) -> np.ndarray:
        return self.normalise(x, gamma, beta, (), running_mean, running_var, training, momentum, eps)

    def normalise(self, x, gamma, beta, extra: tuple, running_mean, running_var, training, momentum, eps):
        """The kernels' forward on the (N, C, S) view, ``extra`` arrays (of x's shape) after
        the others, and the running statistics' update."""
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)  # (N, C, S): every layout the kernels see
        self.has_gamma, self.has_beta = gamma is not None, beta is not None
        gamma = np.ones(c, x.dtype) if gamma is None else gamma
        beta = np.zeros(c, x.dtype) if beta is None else beta
        self.kernels = kernels.select(self.family)  # fixed here, reused by backward
        running = None if training else (running_mean, running_var)
        extra = tuple(a.reshape(x3.shape) for a in extra)
        y, self.for_backward = self.kernels.forward(x3, gamma, beta, eps, running, *extra)
        if training:
            mean, var = self.for_backward.mean, self.for_backward.var
            if running_mean is not None:
                running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            if running_var is not None:
                m = x3.shape[0] * x3.shape[2]
                # The running variance is the unbiased estimate, as in PyTorch.
                running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))
        return y.reshape(x.shape)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x3 = self.for_backward.x
        dx, dgamma, dbeta, *extra = self.kernels.backward(grad.reshape(x3.shape), self.for_backward)
        return (
            dx.reshape(grad.shape),
            dgamma if self.has_gamma else None,
            dbeta if self.has_beta else None,
            *(None if g is None else g.reshape(grad.shape) for g in extra),
        )


def _array(t: Any) -> np.ndarray | None:
    return t._data if isinstance(t, Tensor) else (None if t is None else np.asarray(t))


def _checked(input: Tensor, running_mean: Any, running_var: Any, weight: Any, bias: Any,
             training: bool, name: str) -> dict[str, np.ndarray | None]:
    """The arrays behind the per-channel arguments, after checking them against ``input``."""
    x = _array(input)
    check_ndim(name, x, (2, 3, 4), "(N, C), (N, C, L) or (N, C, H, W)")
    arrays = {"weight": weight, "bias": bias, "running_mean": running_mean, "running_var": running_var}
    arrays = {key: _array(a) for key, a in arrays.items()}
    check_float(name, x, *arrays.values())
    c = x.shape[1]
    for key, a in arrays.items():
        if a is not None and a.shape != (c,):
            raise ValueError(
                f"{name}: {key} has shape {a.shape}, expected ({c},) (one value per channel)"
            )
    if c == 0:  # nothing to normalise: the callers return the empty result, as PyTorch gives
        return arrays
    if training and x.size // c <= 1:
        raise ValueError(
            f"{name}: Expected more than 1 value per channel when training, "
            f"got input size {tuple(x.shape)}"
        )
    if not training and (arrays["running_mean"] is None or arrays["running_var"] is None):
        raise ValueError(f"{name}: running_mean and running_var must be given in eval mode")
    return arrays


def batch_norm(
    input: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation over axis 1 of an (N, C), (N, C, L) or (N, C, H, W) input.

    ``running_mean``/``running_var`` (Tensors or arrays of shape (C,), or None) are
    updated in place when ``training``, and used when not.
    """
    arrays = _checked(input, running_mean, running_var, weight, bias, training, "batch_norm")
    if input.shape[1] == 0:  # no channels, nothing to normalise: the empty result, as PyTorch gives
        return input * 1
    return BatchNorm.apply(
        input,
        weight,
        bias,
        running_mean=arrays["running_mean"],
        running_var=arrays["running_var"],
        training=training,
        momentum=momentum,
        eps=eps,
    )


class BatchNormReLU(BatchNorm):
    """z = max(batch_norm(x) [+ residual], 0) as one op: ``relu(batch_norm(x, ...) [+ residual])``
    storing one array.

    As pieces, the ops keep batch norm's output (the next op's input) and the sum alive
    until backward beside ReLU's output z; fused, only z, whose sign is ReLU's mask
    (``tinyres.kernels.batchnorm_relu_reference``). Backward reads z, so an in-place
    change of z before backward is refused, exactly as after ``relu``.
    ``tinyres.nn.fusion`` decides when a model may use it: never when anyone observes
    the pieces (module hooks, a learner's batch-norm kernels).
    """

    family = "batch_norm_relu"
    saves_output = True

    def forward(self, x, gamma, beta, residual, *, running_mean, running_var, training, momentum, eps):
        extra = () if residual is None else (residual,)
        return self.normalise(x, gamma, beta, extra, running_mean, running_var, training, momentum, eps)


def batch_norm_relu(
    input: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    residual: Tensor | None = None,
) -> Tensor:
    """``relu(batch_norm(input, ...) + residual)`` (the residual optional; the other arguments
    as ``batch_norm``'s) as one op. ``residual`` has the input's shape and dtype.

    >>> import numpy as np
    >>> import tinyres as tr
    >>> x = tr.tensor(np.arange(8.0).reshape(2, 2, 2, 1))
    >>> z = batch_norm_relu(x, None, None, training=True, residual=x)
    >>> np.array_equal(z.numpy(), (batch_norm(x, None, None, training=True) + x).relu().numpy())
    True
    """
    arrays = _checked(input, running_mean, running_var, weight, bias, training, "batch_norm_relu")
    if residual is not None:
        r = _array(residual)
        if r.shape != tuple(input.shape) or r.dtype != _array(input).dtype:
            raise ValueError(f"batch_norm_relu: residual has shape {r.shape} and dtype {r.dtype}, expected "
                             f"the input's {tuple(input.shape)} and {_array(input).dtype}")
    if input.shape[1] == 0:
        return (input if residual is None else input + residual).relu()
    return BatchNormReLU.apply(
        input,
        weight,
        bias,
        residual,
        running_mean=arrays["running_mean"],
        running_var=arrays["running_var"],
        training=training,
        momentum=momentum,
        eps=eps,
    )
