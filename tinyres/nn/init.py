r"""Weight initialisation, as ``torch.nn.init``: fill a tensor in place, return it.

Why the scale matters: a layer with ``fan_in`` inputs of variance 1 and weights of
variance ``s^2`` gives outputs of variance ``fan_in * s^2``. Kaiming (He et al.
2015) picks ``s = gain / sqrt(fan)`` so the signal neither grows nor shrinks through
a deep ReLU network; ``gain = sqrt(2)`` for ReLU makes up for the half it zeroes.

.. math::  \mathrm{std} = \frac{\mathrm{gain}}{\sqrt{\mathrm{fan}}}, \qquad
           \mathrm{bound} = \sqrt{3}\,\mathrm{std} \quad (U[-b, b] \text{ has variance } b^2/3)

Xavier/Glorot (2010) balances both directions: ``std = gain * sqrt(2 / (fan_in + fan_out))``.
For a weight of shape (out, in, kh, kw), ``fan_in = in*kh*kw`` and ``fan_out = out*kh*kw``.

Random numbers come from ``tinyres.creation.generator()``, so ``tinyres.manual_seed``
makes an initialisation reproducible.

>>> import tinyres as tr
>>> from tinyres.nn import init
>>> w = tr.zeros(4, 3, 3, 3)
>>> calculate_fan_in_and_fan_out(w)
(27, 36)
>>> round(calculate_gain("relu"), 4)
1.4142
>>> tr.manual_seed(0)
>>> _ = init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
>>> bool(abs(w.numpy().std() - (2 / 36) ** 0.5) < 0.05)
True
"""

from __future__ import annotations

import math

import numpy as np

from tinyres.engine import Tensor, no_grad

_LINEAR_LIKE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that keeps activations' variance steady through ``nonlinearity``."""
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {slope!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """Inputs and outputs per weight: dims 1 and 0 times the receptive field size."""
    if tensor.ndim < 2:
        raise ValueError(
            f"fan in and fan out need a tensor with at least 2 dimensions, got shape {tensor.shape}"
        )
    receptive_field = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _tensor(tensor: Tensor) -> Tensor:
    """``tensor``, checked: init functions fill a tinyres Tensor, nothing else."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"init functions fill a tinyres Tensor, got {type(tensor).__name__}")
    return tensor


def _fill(tensor: Tensor, value: float) -> Tensor:
    """Write ``value`` into ``tensor`` in place, in its dtype, outside the graph."""
    with no_grad():  # an in-place op, so the tensor's version counts it (as in PyTorch)
        return _tensor(tensor).copy_(value)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with samples from U[a, b): ``Tensor.uniform_``, the one implementation."""
    return _tensor(tensor).uniform_(a, b)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with samples from N(mean, std^2): ``Tensor.normal_``, the one implementation."""
    return _tensor(tensor).normal_(mean, std)


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, val)


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 1.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U[-b, b] with ``b = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio)."""
    if tensor.numel() == 0:  # nothing to fill, and a zero fan would divide by 0
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    if tensor.numel() == 0:
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(
    tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """U[-b, b] with ``b = sqrt(3) * gain / sqrt(fan)`` (He et al.); ``a`` is the
    leaky-ReLU slope used in the gain."""
    if tensor.numel() == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std)


def pytorch_default_(weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """What a fresh ``Conv2d`` or ``Linear`` gets in PyTorch: ``kaiming_uniform_`` with
    ``a = sqrt(5)``, i.e. U[-1/sqrt(fan_in), 1/sqrt(fan_in)] (gain sqrt(1/3) times
    sqrt(3)), and the bias from the same range. Returns the weight."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None and weight.numel() > 0:
        bound = 1 / math.sqrt(calculate_fan_in_and_fan_out(weight)[0])
        uniform_(bias, -bound, bound)
    return weight


def kaiming_normal_(
    tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """N(0, std^2) with ``std = gain / sqrt(fan)``; torchvision's ResNets use
    ``mode="fan_out", nonlinearity="relu"`` for every convolution."""
    if tensor.numel() == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std)
