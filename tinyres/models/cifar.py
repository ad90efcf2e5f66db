"""The CIFAR-10 networks of the ResNet paper (section 4.2): 6n+2 layers, widths 16/32/64.

A 3x3 convolution with 16 filters, then three stages of ``n`` blocks of two 3x3
convolutions on 32x32, 16x16 and 8x8 maps with 16, 32 and 64 filters, then global
average pooling and a 10-way linear layer: ``6n + 2`` weighted layers in all.

- ``resnet20/32/44/56/110``: residual networks (``BasicBlock``). ``shortcut="A"`` (the
  paper's CIFAR choice) subsamples and zero-pads where the shape changes, adding no
  parameters; ``shortcut="B"`` uses a 1x1 conv + BN projection there.
- ``plain20/32/44/56/110``: the same layers without shortcuts (``PlainBlock``).
- ``preact_resnet20/32/44/56/110``: pre-activation blocks (BN-ReLU-conv, "Identity
  Mappings in Deep Residual Networks"), with a final BN-ReLU before the pooling.

``CifarResNet`` takes every option; the named constructors fix the depth and block.
For experiments (gradient flow, say) it also takes:

- ``activation``: ``"relu"`` (default), ``"tanh"`` or ``"sigmoid"`` for every
  non-linearity of the network;
- ``norm``: ``"batch"`` (default) or ``"none"``, which replaces every BatchNorm by
  ``Identity``. The convolutions stay bias-free, so the normalisation is the only
  thing that changes.

=========  ===  ==================  =====================
model      n    parameters (A)      parameters (B)
=========  ===  ==================  =====================
resnet20   3    269,722             272,474
resnet32   5    464,154             466,906
resnet44   7    658,586             661,338
resnet56   9    853,018             855,770
resnet110  18   1,727,962           1,730,714
=========  ===  ==================  =====================

>>> import tinyres as tr
>>> model = resnet20()
>>> sum(p.numel() for p in model.parameters())
269722
>>> model(tr.zeros(2, 3, 32, 32)).shape
tinyres.Size([2, 10])
"""

from __future__ import annotations

from tinyres import nn
from tinyres.engine import Tensor
from tinyres.models.blocks import (
    BasicBlock,
    PadShortcut,
    PlainBlock,
    PreActBlock,
    init_resnet_weights,
    make_stage,
    projection_shortcut,
)
from tinyres.nn.fusion import batch_norm_relu

BLOCKS = {"basic": BasicBlock, "plain": PlainBlock, "preact": PreActBlock}
SHORTCUTS = {"A": PadShortcut, "B": projection_shortcut}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
NORMS = {"batch": nn.BatchNorm2d, "none": lambda channels: nn.Identity()}


def _choice(option: str, value: str, choices: dict) -> object:
    if value not in choices:
        raise ValueError(f"CifarResNet: {option}={value!r} is not one of {sorted(choices)}")
    return choices[value]


class CifarResNet(nn.Module):
    """A 6n+2-layer CIFAR network (``depth`` = 20, 32, 44, 56, 110, ...).

    ``block``: ``"basic"`` (residual), ``"plain"`` (no shortcuts) or ``"preact"``.
    ``shortcut``: ``"A"`` or ``"B"`` for the residual blocks (default ``"A"``); a plain
    network has none, so giving one is an error. ``activation``, ``norm``: see the
    module docstring. ``zero_init_residual`` zeroes the last BN weight of each branch
    (residual blocks with BatchNorm only). ``in_channels``: channels of the input
    images (3 for CIFAR, 1 for grey-scale digits).

    >>> CifarResNet(8, block="plain", activation="tanh", norm="none").layer1
    Sequential(
      (0): PlainBlock(
        (conv1): Conv2d(16, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        (bn1): Identity()
        (relu): Tanh()
        (conv2): Conv2d(16, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        (bn2): Identity()
      )
    )
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        *,
        block: str = "basic",
        shortcut: str | None = None,
        activation: str = "relu",
        norm: str = "batch",
        zero_init_residual: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet: depth must be 6n+2 with n >= 1 (20, 32, 44, ...), got {depth}")
        block_cls = _choice("block", block, BLOCKS)
        if block == "plain" and shortcut is not None:
            raise ValueError("CifarResNet: a plain network has no shortcuts; leave shortcut unset")
        shortcut_fn = _choice("shortcut", shortcut or "A", SHORTCUTS)
        norm_layer = _choice("norm", norm, NORMS)
        act = _choice("activation", activation, ACTIVATIONS)
        if zero_init_residual and (block == "plain" or norm != "batch"):
            raise ValueError(
                "CifarResNet: zero_init_residual needs residual blocks with BatchNorm, "
                f"got block={block!r}, norm={norm!r}"
            )
        n = (depth - 2) // 6
        options = {"norm_layer": norm_layer, "activation": act}
        self.preact = block == "preact"
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False)
        if not self.preact:  # a pre-activation network normalises inside its first block
            self.bn1 = norm_layer(16)
        self.relu = act()
        self.layer1 = make_stage(block_cls, 16, 16, n, 1, shortcut_fn, **options)
        self.layer2 = make_stage(block_cls, 16, 32, n, 2, shortcut_fn, **options)
        self.layer3 = make_stage(block_cls, 32, 64, n, 2, shortcut_fn, **options)
        if self.preact:  # the last block's sum has not been normalised yet
            self.bn_final = norm_layer(64)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_resnet_weights(self, zero_init_residual)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if not self.preact:
            x = batch_norm_relu(self.bn1, self.relu, x)  # one op when unobserved: tinyres.nn.fusion
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        if self.preact:
            x = batch_norm_relu(self.bn_final, self.relu, x)
        x = self.avgpool(x)
        return self.fc(x.flatten(1))


# ---- named constructors -------------------------------------------------------------


def resnet20(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """ResNet-20 (n=3, 0.27 M parameters); ``options`` as ``CifarResNet``."""
    return CifarResNet(20, num_classes, shortcut=shortcut, **options)


def resnet32(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """ResNet-32 (n=5, 0.46 M parameters); ``options`` as ``CifarResNet``."""
    return CifarResNet(32, num_classes, shortcut=shortcut, **options)


def resnet44(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """ResNet-44 (n=7, 0.66 M parameters); ``options`` as ``CifarResNet``."""
    return CifarResNet(44, num_classes, shortcut=shortcut, **options)


def resnet56(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """ResNet-56 (n=9, 0.85 M parameters); ``options`` as ``CifarResNet``."""
    return CifarResNet(56, num_classes, shortcut=shortcut, **options)


def resnet110(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """ResNet-110 (n=18, 1.7 M parameters); ``options`` as ``CifarResNet``."""
    return CifarResNet(110, num_classes, shortcut=shortcut, **options)


def plain20(num_classes: int = 10, **options) -> CifarResNet:
    """Plain-20: ResNet-20's layers without shortcuts."""
    return CifarResNet(20, num_classes, block="plain", **options)


def plain32(num_classes: int = 10, **options) -> CifarResNet:
    """Plain-32: ResNet-32's layers without shortcuts."""
    return CifarResNet(32, num_classes, block="plain", **options)


def plain44(num_classes: int = 10, **options) -> CifarResNet:
    """Plain-44: ResNet-44's layers without shortcuts."""
    return CifarResNet(44, num_classes, block="plain", **options)


def plain56(num_classes: int = 10, **options) -> CifarResNet:
    """Plain-56: ResNet-56's layers without shortcuts (worse than Plain-20, Fig. 1)."""
    return CifarResNet(56, num_classes, block="plain", **options)


def plain110(num_classes: int = 10, **options) -> CifarResNet:
    """Plain-110: ResNet-110's layers without shortcuts."""
    return CifarResNet(110, num_classes, block="plain", **options)


def preact_resnet20(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """Pre-activation ResNet-20; ``options`` as ``CifarResNet``."""
    return CifarResNet(20, num_classes, block="preact", shortcut=shortcut, **options)


def preact_resnet32(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """Pre-activation ResNet-32; ``options`` as ``CifarResNet``."""
    return CifarResNet(32, num_classes, block="preact", shortcut=shortcut, **options)


def preact_resnet44(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """Pre-activation ResNet-44; ``options`` as ``CifarResNet``."""
    return CifarResNet(44, num_classes, block="preact", shortcut=shortcut, **options)


def preact_resnet56(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """Pre-activation ResNet-56; ``options`` as ``CifarResNet``."""
    return CifarResNet(56, num_classes, block="preact", shortcut=shortcut, **options)


def preact_resnet110(num_classes: int = 10, shortcut: str = "A", **options) -> CifarResNet:
    """Pre-activation ResNet-110 (the "Identity Mappings" paper's CIFAR baseline)."""
    return CifarResNet(110, num_classes, block="preact", shortcut=shortcut, **options)
