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
from tinyres.ops.shape import cat
from tinyres.ops.validate import as_pair, check_window_fits


class Convolution(Function):
    r"""y = conv2d(x, w) + b (NCHW); the math is in ``tinyres.kernels.conv_reference``.

    The kernels (tier and algorithm) are chosen once, at forward, and kept for backward.
    Backward returns (dx, dw, db); dx is skipped when the input needs no gradient
    (an image batch), which saves one matrix product and a col2im, and db when
    there is no bias.
    """

    saved_inputs = ((0, 1, 2), (0, 1, 2))  # PyTorch saves both whatever is wanted

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
        # The algorithm (im2col or Winograd) is chosen from the shapes, inside select.
        self.kernels = kernels.select("conv2d", x_shape=x.shape, w_shape=w.shape, stride=stride,
                                      dilation=dilation)
        self.has_bias = b is not None
        y, self.for_backward = self.kernels.forward(x, w, b, stride, padding, dilation)
        return y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x_input = self.inputs[0]
        input_grad = isinstance(x_input, Tensor) and x_input.requires_grad
        return self.kernels.backward(grad, self.for_backward, input_grad, bias_grad=self.has_bias)


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
    groups: int = 1,
) -> Tensor:
    """2-d convolution over an (N, C_in, H, W) batch, or one (C_in, H, W) image, as in PyTorch.

    ``weight`` is (C_out, C_in, kH, kW), ``bias`` is (C_out,) or None; ``stride``,
    ``padding`` and ``dilation`` are ints or (height, width) pairs. With ``groups`` g,
    the channels split into g independent convolutions and ``weight`` is
    (C_out, C_in / g, kH, kW) (see ``grouped_conv2d``). Every argument is
    checked here, before any kernel runs, and a mistake is named with what was
    expected and what came.

    >>> import tinyres as tr
    >>> x = tr.ones(2, 3, 8, 8)
    >>> conv2d(x, tr.ones(4, 3, 3, 3), stride=2, padding=1).shape
    tinyres.Size([2, 4, 4, 4])
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
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    channels = input.shape[-3]
    if channels != C_in * groups:
        per_group = f" ({groups} groups of {C_in})" if groups > 1 else ""
        raise ValueError(
            f"conv2d: input has {channels} channels, weight expects {C_in * groups}{per_group} "
            f"(weight shape {weight.shape})"
        )
    if C_out % groups:
        raise ValueError(f"conv2d: {C_out} output channels do not split into {groups} groups")
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
        return grouped_conv2d(input.unsqueeze(0), weight, bias, groups, **options).squeeze(0)
    return grouped_conv2d(input, weight, bias, groups, **options)


def grouped_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None, groups: int, **options) -> Tensor:
    """A grouped convolution composed from plain ones: group g convolves input channels
    [g*C_in, (g+1)*C_in) with output channels [g*C_out/groups, ...), and the outputs are
    concatenated. Depthwise convolution is groups = C_in. Autograd goes through the
    slices and ``cat``, so no new backward is needed (and every kernel tier works)."""
    if groups == 1:
        return Convolution.apply(input, weight, bias, **options)
    c_in, c_out = weight.shape[1], weight.shape[0] // groups
    outputs = []
    for g in range(groups):
        x_g = input[:, g * c_in : (g + 1) * c_in]
        w_g = weight[g * c_out : (g + 1) * c_out]
        b_g = None if bias is None else bias[g * c_out : (g + 1) * c_out]
        outputs.append(Convolution.apply(x_g, w_g, b_g, **options))
    return cat(outputs, dim=1)
