r"""Planted mistake for ex11 (ex11_basic_block.py): the grader must fail it.

The stride sits on conv2 instead of conv1: same keys, shapes and output size, other numbers.

Exercise 11 (lesson 07): ``BasicBlock`` from ``nn`` layers, with torchvision's names.

.. math::  y = \mathrm{ReLU}\big(F(x) + s(x)\big), \qquad
           F(x) = \mathrm{bn2}(\mathrm{conv2}(\mathrm{ReLU}(\mathrm{bn1}(\mathrm{conv1}(x)))))

conv1 is 3x3 with ``stride`` and padding 1, conv2 is 3x3 with stride 1 and padding 1,
both without bias (the batch norm after each has one). The shortcut s is the identity,
or ``downsample(x)`` when one is given (it maps x to the output's shape). The ReLU comes
after the addition. Names are torchvision's (conv1, bn1, relu, conv2, bn2, downsample),
so its weights load with ``load_state_dict``. Shapes: x (N, inplanes, H, W) ->
(N, planes, H_out, W_out) with H_out = (H - 1) // stride + 1.

Check your work: ``tinyres check ex11``.
"""

from __future__ import annotations

import tinyres.nn as nn
from tinyres import Tensor

# The property the grader must fail (tests/test_grading.py checks that it does):
EXPECTED_FAILURE = "output equals the library's"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (ResNet-18/34, the CIFAR ResNets)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        """conv1, bn1, relu, conv2, bn2 (torchvision's names) and the given downsample."""
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=1, padding=1, bias=False)  # MISTAKE
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut), the shortcut x or downsample(x)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)
