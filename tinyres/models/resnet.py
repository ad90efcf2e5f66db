"""ImageNet ResNets (He et al., "Deep Residual Learning for Image Recognition", 2015).

The layout is torchvision's, so ``state_dict()`` keys and shapes match it exactly and
weights move between the two as plain NumPy arrays:

=========  ==========  =======================  ===========
model      block       blocks per stage         parameters
=========  ==========  =======================  ===========
resnet18   BasicBlock  2, 2, 2, 2               11,689,512
resnet34   BasicBlock  3, 4, 6, 3               21,797,672
resnet50   Bottleneck  3, 4, 6, 3               25,557,032
resnet101  Bottleneck  3, 4, 23, 3              44,549,160
resnet152  Bottleneck  3, 8, 36, 3              60,192,808
=========  ==========  =======================  ===========

torchvision's variants of ResNet-50 change only the 3x3 convolution of each Bottleneck:
``resnext50_32x4d`` splits it into 32 groups of 4 channels per 64 of ``planes``
(25,028,904 parameters), ``wide_resnet50_2`` doubles its width (68,883,240).

The stem (7x7 conv with stride 2, then 3x3 max-pool with stride 2) brings a 224x224
image to 56x56; stages 2-4 halve the resolution and double the width, and global
average pooling feeds one linear classifier.

>>> import tinyres as tr
>>> model = resnet18(num_classes=10)
>>> model(tr.zeros(2, 3, 32, 32)).shape  # a batch of 2: training-mode BN needs it at 1x1
tinyres.Size([2, 10])
"""

from __future__ import annotations

from functools import partial

from tinyres import nn
from tinyres.engine import Tensor
from tinyres.models.blocks import (
    BasicBlock,
    Bottleneck,
    NormLayer,
    init_resnet_weights,
    make_stage,
    projection_shortcut,
)
from tinyres.nn.fusion import batch_norm_relu


class ResNet(nn.Module):
    """The ImageNet ResNet: stem, four stages of ``block``, global pool, classifier.

    ``layers`` gives the number of blocks per stage (widths 64, 128, 256, 512 before
    the block's expansion). Shape changes use projection shortcuts (option B), as
    torchvision. ``zero_init_residual`` starts each block as its shortcut.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        norm_layer: NormLayer | None = None,
    ):
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"ResNet needs four stages of at least one block, got layers={layers}")
        options: dict = {"norm_layer": norm_layer} if norm_layer else {}
        if (groups, width_per_group) != (1, 64):
            if block is not Bottleneck:
                raise ValueError("groups and width_per_group need Bottleneck blocks, as in torchvision")
            options.update(groups=groups, base_width=width_per_group)
        shortcut = partial(projection_shortcut, norm_layer=norm_layer)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = (norm_layer or nn.BatchNorm2d)(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), start=1):
            stage = make_stage(block, inplanes, planes, layers[i - 1], stride, shortcut, **options)
            setattr(self, f"layer{i}", stage)
            inplanes = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_resnet_weights(self, zero_init_residual)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(batch_norm_relu(self.bn1, self.relu, self.conv1(x)))  # see tinyres.nn.fusion
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        return self.fc(x.flatten(1))


def resnet18(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-18: BasicBlocks 2, 2, 2, 2 (11.7 M parameters at 1000 classes)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual)


def resnet34(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-34: BasicBlocks 3, 4, 6, 3 (21.8 M parameters at 1000 classes)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual)


def resnet50(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-50: Bottlenecks 3, 4, 6, 3 (25.6 M parameters, about 4.1 G MACs at 224x224)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual)


def resnet101(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-101: Bottlenecks 3, 4, 23, 3 (44.5 M parameters at 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, zero_init_residual)


def resnet152(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-152: Bottlenecks 3, 8, 36, 3 (60.2 M parameters at 1000 classes)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, zero_init_residual)


def resnext50_32x4d(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-50 32x4d: ResNet-50 with 32 groups of 4 channels (per 64) in each 3x3 (25.0 M)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, groups=32, width_per_group=4)


def wide_resnet50_2(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with twice the width inside each Bottleneck (68.9 M)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, width_per_group=128)
