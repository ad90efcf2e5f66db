"""Reference models written directly in PyTorch, for the cross-checks of tinyres.models.

torchvision is not a dependency, so its ResNet layout (v1.5: stride on the 3x3 of a
bottleneck, projection shortcut named ``downsample``) is written out here with plain
``torch.nn``, together with the CIFAR networks of the ResNet paper (section 4.2) and the
pre-activation variant ("Identity Mappings in Deep Residual Networks"). The tests copy
weights from these models into tinyres models as NumPy arrays and compare numbers.

Importing this module needs torch; tests import it after ``pytest.importorskip("torch")``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# ---- torchvision layout ----------------------------------------------------------------


class TorchBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TorchBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def torch_projection(inplanes, outplanes, stride):
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes)
    )


class TorchResNet(nn.Module):
    """torchvision.models.ResNet, without the options tinyres does not offer."""

    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = torch_projection(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


TORCH_IMAGENET = {
    "resnet18": (TorchBasicBlock, [2, 2, 2, 2]),
    "resnet34": (TorchBasicBlock, [3, 4, 6, 3]),
    "resnet50": (TorchBottleneck, [3, 4, 6, 3]),
    "resnet101": (TorchBottleneck, [3, 4, 23, 3]),
    "resnet152": (TorchBottleneck, [3, 8, 36, 3]),
}


def torch_imagenet(name: str, num_classes: int = 1000) -> TorchResNet:
    block, layers = TORCH_IMAGENET[name]
    return TorchResNet(block, layers, num_classes)


# ---- CIFAR family (ResNet paper, section 4.2) -----------------------------------------


class TorchPadShortcut(nn.Module):
    """Option A: take every stride-th pixel, append zero channels."""

    def __init__(self, inplanes, outplanes, stride):
        super().__init__()
        self.extra, self.stride = outplanes - inplanes, stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return torch.nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra))


class TorchPlainBlock(TorchBasicBlock):
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


class TorchPreActBlock(nn.Module):
    """BN-ReLU-conv twice; a projecting shortcut reads the pre-activated input."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class TorchCifarResNet(nn.Module):
    def __init__(self, depth, num_classes=10, block="basic", shortcut="A"):
        super().__init__()
        n = (depth - 2) // 6
        cls = {"basic": TorchBasicBlock, "plain": TorchPlainBlock, "preact": TorchPreActBlock}[block]
        self.preact = block == "preact"
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        if not self.preact:
            self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        inplanes = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                downsample = None
                if block != "plain" and (s != 1 or inplanes != planes):
                    downsample = (
                        TorchPadShortcut(inplanes, planes, s)
                        if shortcut == "A"
                        else torch_projection(inplanes, planes, s)
                    )
                blocks.append(cls(inplanes, planes, s, downsample))
                inplanes = planes
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        if self.preact:
            self.bn_final = nn.BatchNorm2d(64)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        if not self.preact:
            x = self.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.preact:
            x = self.relu(self.bn_final(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---- moving weights ---------------------------------------------------------------------


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial weight, bias and running statistics.

    Freshly initialised BN layers (weight 1, bias 0, mean 0, var 1) would hide a
    tinyres BN that ignored any of them.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)


def numpy_state(model: nn.Module) -> dict[str, np.ndarray]:
    """The state dict as plain NumPy arrays (copies)."""
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
