r"""Exercise 13 (lesson 08): the ``Bottleneck`` block of ResNet-50/101/152, torchvision's v1.5.

1x1 conv down to ``planes`` channels, 3x3 conv (carrying the ``stride``, padding 1),
1x1 conv up to ``4 * planes``, each followed by batch norm, ReLU after the first two;
then the shortcut is added and a ReLU follows:

.. math::  y = \mathrm{ReLU}\big(\mathrm{bn3}(\mathrm{conv3}(h)) + s(x)\big), \quad
           h = \mathrm{ReLU}(\mathrm{bn2}(\mathrm{conv2}(\mathrm{ReLU}(\mathrm{bn1}(\mathrm{conv1}(x))))))

No convolution has a bias. s is the identity or ``downsample(x)``. Names: conv1, bn1,
conv2, bn2, conv3, bn3, relu, downsample. x (N, inplanes, H, W) -> (N, 4 planes, H_out, W_out).

Check your work: ``tinyres check ex13``.
"""

from __future__ import annotations

import tinyres.nn as nn
from tinyres import Tensor


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 with the stride, 1x1 expand by ``expansion``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        """conv1 (1x1), bn1, conv2 (3x3, the stride), bn2, conv3 (1x1, 4 planes), bn3, relu, downsample."""
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)
