"""Planted mistake for ex14 (ex14_make_layer.py): the grader must fail it.

Every block gets the stride and the downsample, not just the first.

Exercise 14 (lesson 09): one ResNet stage, torchvision's ``_make_layer``.

A stage is ``blocks`` blocks in an ``nn.Sequential``. The first block takes ``inplanes``
channels and carries the ``stride``; it outputs ``planes * block.expansion`` channels,
as does every later block (which takes that many in, with stride 1). The first block
needs a projection shortcut whenever its input and output shapes differ (stride != 1,
or inplanes != planes * expansion): ``nn.Sequential(conv 1x1 with the stride, no bias,
BatchNorm2d)``, passed as its ``downsample``. ``block`` is ``tinyres.models.BasicBlock`` or
``tinyres.models.Bottleneck``, called as ``block(inplanes, planes, stride, downsample)``.
Keys then match torchvision's: ``0.conv1.weight``, ``0.downsample.0.weight``, ...

Check your work: ``tinyres check ex14``.
"""

from __future__ import annotations

import tinyres.nn as nn

# The property the grader must fail (tests/test_grading.py checks that it does):
EXPECTED_FAILURE = "output equals"


def make_layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` blocks; the first with ``stride`` and, when the shape changes, a projection."""
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        projection = nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=False)
        downsample = nn.Sequential(projection, nn.BatchNorm2d(outplanes))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(outplanes, planes, stride, downsample) for _ in range(1, blocks)]  # MISTAKE
    return nn.Sequential(*layers)
