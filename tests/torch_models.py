"""Reference models written directly in PyTorch, for the cross-checks of tinyres.models.

torchvision is not a dependency, so its ResNet layout (v1.5: stride on the 3x3 of a
bottleneck, projection shortcut named ``downsample``) is written out here with plain
``torch.nn``, together with the CIFAR networks of the ResNet paper (section 4.2) and the
pre-activation variant ("Identity Mappings in Deep Residual Networks"). The tests copy
weights from these models into tinyres models as NumPy arrays and compare numbers.

``cross_check`` copies a PyTorch model's weights into a tinyres model and compares
outputs, gradients and running statistics in train and eval mode.

Importing this module needs torch; tests import it after ``pytest.importorskip("torch")``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import tinyres as tr

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
    """Give every BN non-trivial weight, bias and running statistics (GroupNorm and
    LayerNorm their weight and bias).

    Freshly initialised BN layers (weight 1, bias 0, mean 0, var 1) would hide a
    tinyres BN that ignored any of them, and a zero-initialised last BN of a residual
    branch would hide the whole branch.
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
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def numpy_state(model: nn.Module) -> dict[str, np.ndarray]:
    """The state dict as plain NumPy arrays (copies)."""
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


# ---- comparing tinyres with PyTorch ------------------------------------------------------


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str, rel: float, floor: float = 0.0) -> None:
    """Scale-relative comparison: max |ours - theirs| <= rel * max(max |theirs|, floor).

    Elementwise relative error is meaningless for elements near zero, where float32
    sums in a different order differ by their rounding; the scale is the tensor's, or
    ``floor`` for a tensor that is zero in exact arithmetic (see ``cross_check``).
    """
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}"
    scale = max(float(np.max(np.abs(theirs))), floor, 1e-30)
    error = float(np.max(np.abs(ours.astype(np.float64) - theirs))) / scale
    assert error <= rel, f"{what}: relative error {error:.2e} > {rel:.0e}"


def cross_check(ours, theirs, input_shape, seed: int = 0, train_steps: int = 1) -> None:
    """Copy ``theirs``' weights into ``ours``; compare outputs, gradients, running stats.

    Two passes, each in train mode (``train_steps`` batches) and then eval mode:

    - float64 (both models cast): outputs, running statistics, and the gradients of
      the input and of every parameter, to 1e-9 of each tensor's largest element;
    - float32: outputs and running statistics to 1e-4.

    Why float32 gradients are not compared: they are not determined to 1e-4 by the
    weights. An activation within float32 rounding of a ReLU kink falls on either side
    depending on summation order, and in train mode batch-coupled BN spreads that flip
    over its channel. Measured here, PyTorch's own float32 input gradient of a
    ResNet-18 is up to 3e-2 (train mode) and 2.5e-3 (eval mode, where tinyres's float32
    matched float64 to 4e-7) away from its float64 one, depending on the input.

    Some gradients are zero in exact arithmetic (a conv bias or a projection's BN bias
    followed by a training-mode BN, which removes any per-channel shift) and are
    rounding noise in both libraries, so parameter gradients are measured against at
    least 1/1000 of the model's largest parameter gradient.
    """
    randomize_batchnorm(theirs, seed)
    weights = numpy_state(theirs)
    for dtype, rel in ((np.float64, 1e-9), (np.float32, 1e-4)):
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
        ours.to(dtype)
        ours.load_state_dict(weights)
        rng = np.random.default_rng(seed)
        for mode in ("train", "eval"):
            ours.train(mode == "train")
            theirs.train(mode == "train")
            grads = dtype == np.float64
            what = f"{np.dtype(dtype).name} {mode}"
            for _ in range(train_steps if mode == "train" else 1):
                x = rng.standard_normal(input_shape).astype(dtype)
                _compare_step(ours, theirs, x, rng, rel, grads, what)
            theirs_state = numpy_state(theirs)
            for name, value in ours.state_dict().items():  # running statistics moved alike
                assert_close(value.numpy(), theirs_state[name], f"{what} state {name}", rel)


def _compare_step(ours, theirs, x, rng, rel, grads, what):
    """One forward (and, if ``grads``, backward) on both sides, compared."""
    xo, xt = tr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    assert_close(yo.detach().numpy(), yt.detach().numpy(), f"{what} output", rel)
    if not grads:
        return
    upstream = rng.standard_normal(yt.shape).astype(x.dtype)
    ours.zero_grad()
    theirs.zero_grad()
    (yo * tr.tensor(upstream)).sum().backward()
    (yt * torch.tensor(upstream)).sum().backward()
    assert_close(xo.grad.numpy(), xt.grad.numpy(), f"{what} input gradient", rel)
    named = dict(theirs.named_parameters())
    floor = 1e-3 * max(float(p.grad.abs().max()) for p in named.values())
    for name, p in ours.named_parameters():
        theirs_grad = named[name].grad.numpy()
        assert_close(p.grad.numpy(), theirs_grad, f"{what} gradient of {name}", rel, floor)
