"""Residual networks: torchvision's ImageNet ResNets and the paper's CIFAR family.

``MODELS`` maps every constructor's name to the constructor (the command line picks
models from it):

>>> from tinyres import models
>>> model = models.MODELS["resnet20"](num_classes=10)
>>> type(model).__name__
'CifarResNet'
"""

from tinyres.models.blocks import (
    BasicBlock,
    Bottleneck,
    PadShortcut,
    PlainBlock,
    PreActBlock,
    make_stage,
    projection_shortcut,
)
from tinyres.models.cifar import (
    CifarResNet,
    plain20,
    plain32,
    plain44,
    plain56,
    plain110,
    preact_resnet20,
    preact_resnet32,
    preact_resnet44,
    preact_resnet56,
    preact_resnet110,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)
from tinyres.models.resnet import (
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    wide_resnet50_2,
)

MODELS = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "resnext50_32x4d": resnext50_32x4d,
    "wide_resnet50_2": wide_resnet50_2,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "plain20": plain20,
    "plain32": plain32,
    "plain44": plain44,
    "plain56": plain56,
    "plain110": plain110,
    "preact_resnet20": preact_resnet20,
    "preact_resnet32": preact_resnet32,
    "preact_resnet44": preact_resnet44,
    "preact_resnet56": preact_resnet56,
    "preact_resnet110": preact_resnet110,
}

__all__ = [
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "PadShortcut",
    "PlainBlock",
    "PreActBlock",
    "ResNet",
    "make_stage",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "plain110",
    "preact_resnet20",
    "preact_resnet32",
    "preact_resnet44",
    "preact_resnet56",
    "preact_resnet110",
    "projection_shortcut",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "resnext50_32x4d",
    "wide_resnet50_2",
]
