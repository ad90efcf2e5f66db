r"""Exercise 12 (lesson 07): the pre-activation block (He et al., "Identity Mappings", 2016).

.. math::  y = x' + \mathrm{conv2}(\mathrm{ReLU}(\mathrm{bn2}(\mathrm{conv1}(a)))), \qquad
           a = \mathrm{ReLU}(\mathrm{bn1}(x))

Batch norm and ReLU come before each convolution and nothing follows the addition, so
the path from one block's input to the next is a pure sum. bn1 normalises the input's
``inplanes`` channels; conv1 is 3x3 with ``stride``, conv2 3x3 with stride 1, both with
padding 1 and no bias. The shortcut x' is x itself, or, when ``downsample`` is given,
``downsample`` applied to the pre-activated input a = relu(bn1(x)), as in the authors' code.
Names: bn1, relu, conv1, bn2, conv2, downsample.

Check your work: ``tinyres check ex12``.
"""

from __future__ import annotations

import tinyres.nn as nn
from tinyres import Tensor


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice, then the addition, and nothing after it."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        """bn1 (over inplanes channels), relu, conv1, bn2, conv2 and the given downsample."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """a = relu(bn1(x)); conv2(relu(bn2(conv1(a)))) + (x, or downsample(a))."""
        raise NotImplementedError
