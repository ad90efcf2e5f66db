r"""Group and layer normalisation, composed from primitives (mean, var, sub, div, sqrt).

Both standardise groups of elements of each sample separately,

.. math::  \hat x = \frac{x - \mathrm{mean}(x)}{\sqrt{\mathrm{var}(x) + \epsilon}}

(biased variance), then scale and shift per channel (``GroupNorm``) or per element of
the normalised shape (``LayerNorm``). Unlike batch norm they use no batch statistics,
so train and eval modes agree and a batch of one is fine. Autograd differentiates the
composition, so they have no backward of their own.

>>> import tinyres as tr
>>> x = tr.tensor([[1.0, 3.0], [2.0, 6.0]])
>>> [[round(v, 4) for v in row] for row in layer_norm(x, (2,)).tolist()]
[[-1.0, 1.0], [-1.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

from tinyres.engine import Tensor
from tinyres.ops.reduce import mean, var
from tinyres.ops.validate import check_float


def _standardize(x: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
    centred = x - mean(x, dims, keepdim=True)
    return centred / (var(x, dims, unbiased=False, keepdim=True) + eps).sqrt()


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise each of ``num_groups`` channel groups of each sample of (N, C, *)."""
    check_float("group_norm", input._data)
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise ValueError(f"group_norm: expected (N, C, ...) with C divisible by {num_groups} groups, "
                         f"got shape {input.shape}")
    n, c = input.shape[:2]
    grouped = input.reshape(n, num_groups, -1)
    out = _standardize(grouped, (2,), eps).reshape(input.shape)
    per_channel = (1, c) + (1,) * (input.ndim - 2)  # broadcast (C,) over N and the spatial axes
    if weight is not None:
        out = out * weight.reshape(per_channel)
    if bias is not None:
        out = out + bias.reshape(per_channel)
    return out


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` axes of each sample."""
    check_float("layer_norm", input._data)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape):]) != shape or len(shape) > input.ndim:
        raise ValueError(f"layer_norm: the input's trailing shape must be {shape}, got shape {input.shape}")
    out = _standardize(input, tuple(range(input.ndim - len(shape), input.ndim)), eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
