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
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """a = relu(bn1(x)); conv2(relu(bn2(conv1(a)))) + (x, or downsample(a))."""
        out = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv2(self.relu(self.bn2(self.conv1(out))))
        return out + identity
