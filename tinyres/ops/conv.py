"""The 2-d convolution ``Function``; its kernels (three tiers) live in ``tinyres.kernels``.

``tinyres.nn.functional.conv2d`` validates the arguments and calls ``Convolution.apply``;
this op only picks the kernels of the current tier and algorithm
(``tinyres.kernels.select``) and keeps backward next to forward.

>>> import tinyres as tr
>>> x = tr.ones(1, 1, 3, 3, requires_grad=True)
>>> w = tr.ones(1, 1, 2, 2, requires_grad=True)
>>> y = Convolution.apply(x, w, None, stride=(1, 1), padding=(0, 0), dilation=(1, 1))
>>> y.sum().backward()
>>> x.grad.numpy()[0, 0]
array([[1., 2., 1.],
       [2., 4., 2.],
       [1., 2., 1.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from tinyres import kernels
from tinyres.engine import Function, Tensor
from tinyres.kernels.sizes import Pair
from tinyres.ops.validate import as_pair, check_window_fits


class Convolution(Function):
    r"""y = conv2d(x, w) + b (NCHW); the math is in ``tinyres.kernels.conv_reference``.

    The kernels (tier and algorithm) are chosen once, at forward, and kept for backward.
    Backward returns (dx, dw, db); dx is skipped when the input needs no gradient
    (an image batch), which saves one matrix product and a col2im, and db when
    there is no bias.
    """

    def forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None,
        *,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> np.ndarray:
        self.kernels, self.has_bias = kernels.select("conv2d"), b is not None
        y, self.saved = self.kernels.forward(x, w, b, stride, padding, dilation)
        return y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x_input = self.inputs[0]
        input_grad = isinstance(x_input, Tensor) and x_input.requires_grad
        return self.kernels.backward(grad, self.saved, input_grad, bias_grad=self.has_bias)


def _as_tensor(name: str, value: Tensor | np.ndarray) -> Tensor:
    tensor = value if isinstance(value, Tensor) else Tensor(value)
    if tensor.dtype.kind != "f":
        raise TypeError(f"conv2d: {name} must be a floating-point tensor, got dtype {tensor.dtype}")
    return tensor


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> Tensor:
    """2-d convolution over an (N, C_in, H, W) batch, or one (C_in, H, W) image, as in PyTorch.

    ``weight`` is (C_out, C_in, kH, kW), ``bias`` is (C_out,) or None; ``stride``,
    ``padding`` and ``dilation`` are ints or (height, width) pairs. Every argument is
    checked here, before any kernel runs, and a mistake is named with what was
    expected and what came.

    >>> import tinyres as tr
    >>> x = tr.ones(2, 3, 8, 8)
    >>> conv2d(x, tr.ones(4, 3, 3, 3), stride=2, padding=1).shape
    (2, 4, 4, 4)
    >>> conv2d(x, tr.ones(4, 2, 3, 3))
    Traceback (most recent call last):
    ...
    ValueError: conv2d: input has 3 channels, weight expects 2 (weight shape (4, 2, 3, 3))
    """
    input, weight = _as_tensor("input", input), _as_tensor("weight", weight)
    if input.ndim not in (3, 4):
        raise ValueError(
            f"conv2d: expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got shape {input.shape}"
        )
    if weight.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (C_out, C_in, kH, kW), got shape {weight.shape}")
    if input.dtype != weight.dtype:
        raise TypeError(f"conv2d: input is {input.dtype} but weight is {weight.dtype}; make them match")
    C_out, C_in, kH, kW = weight.shape
    if min(weight.shape) < 1:
        raise ValueError(f"conv2d: weight shape {weight.shape} has an empty dimension")
    channels = input.shape[-3]
    if channels != C_in:
        raise ValueError(
            f"conv2d: input has {channels} channels, weight expects {C_in} (weight shape {weight.shape})"
        )
    if bias is not None:
        bias = _as_tensor("bias", bias)
        if bias.shape != (C_out,):
            raise ValueError(f"conv2d: bias must have shape ({C_out},) for {C_out} output channels, "
                             f"got {bias.shape}")
        if bias.dtype != input.dtype:
            raise TypeError(f"conv2d: input is {input.dtype} but bias is {bias.dtype}; make them match")
    stride = as_pair(stride, "stride", "conv2d", minimum=1)
    padding = as_pair(padding, "padding", "conv2d", minimum=0)
    dilation = as_pair(dilation, "dilation", "conv2d", minimum=1)
    check_window_fits("conv2d", input.shape[-2:], (kH, kW), padding, dilation)
    options = dict(stride=stride, padding=padding, dilation=dilation)
    if input.ndim == 3:  # one image: add the batch axis and remove it again, as PyTorch does
        return Convolution.apply(input.unsqueeze(0), weight, bias, **options).squeeze(0)
    return Convolution.apply(input, weight, bias, **options)
