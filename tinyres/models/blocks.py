r"""The building blocks of residual networks, in torchvision's layout.

A residual block computes a *branch* :math:`\mathcal{F}(x)` (a few conv-BN-ReLU layers)
and adds its input back:

.. math::  y = \mathrm{ReLU}(\mathcal{F}(x) + s(x))

where the shortcut :math:`s` is the identity, or, when the branch changes the shape
(stride 2 or more channels), a *projection* (option B: 1x1 conv + BN) or the
parameter-free *option A* of the ResNet paper (keep every other pixel, append zero
channels). Because the identity path adds 1 to the Jacobian of every block,
:math:`\partial y / \partial x = 1 + \partial \mathcal{F} / \partial x` (before the
ReLU), the gradient reaches early layers even when the branches' Jacobians are small.

- ``BasicBlock``: two 3x3 convs (ResNet-18/34 and the CIFAR networks), expansion 1.
- ``Bottleneck``: 1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50/101/152), with the stride
  on the 3x3 as torchvision ("ResNet v1.5").
- ``PreActBlock``: BN-ReLU-conv twice and nothing after the addition, from "Identity
  Mappings in Deep Residual Networks" (He et al., 2016).
- ``PlainBlock``: a ``BasicBlock`` without the shortcut: the paper's plain baseline.

All four share ``ResidualBlock``'s arguments and forward; each writes only its layers
(``make_layers``) and its branch (up to its last BN, ``before_last_bn``, so that BN, the
addition and the ReLU can run as one op: ``tinyres.nn.fusion``).

Attribute names (``conv1``, ``bn1``, ..., ``relu``, ``downsample``) are torchvision's, so
state dicts move between the two with plain arrays.

>>> import tinyres as tr
>>> block = BasicBlock(16, 32, stride=2, downsample=projection_shortcut(16, 32, 2))
>>> block(tr.zeros(1, 16, 8, 8)).shape
tinyres.Size([1, 32, 4, 4])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyres import nn
from tinyres.engine import Function, Tensor
from tinyres.nn import init
from tinyres.nn.fusion import batch_norm_add_relu, batch_norm_relu
from tinyres.pieces import learner

NormLayer = Callable[[int], nn.Module]
Activation = Callable[[], nn.Module]


def conv3x3(inplanes: int, planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with padding 1 and no bias (the BN after it has one); ``groups``
    splits the channels into independent convolutions (ResNeXt's cardinality)."""
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    """A 1x1 convolution without bias: mixes channels, one pixel at a time."""
    return nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)


def projection_shortcut(
    inplanes: int, outplanes: int, stride: int, norm_layer: NormLayer | None = None
) -> nn.Sequential:
    """Option B: a 1x1 convolution with ``stride`` and a BN, torchvision's ``downsample``.

    >>> import tinyres as tr
    >>> shortcut = projection_shortcut(64, 256, stride=2)
    >>> [type(m).__name__ for m in shortcut.children()]
    ['Conv2d', 'BatchNorm2d']
    >>> shortcut(tr.zeros(2, 64, 8, 8)).shape
    tinyres.Size([2, 256, 4, 4])
    """
    norm_layer = norm_layer or nn.BatchNorm2d
    return nn.Sequential(conv1x1(inplanes, outplanes, stride), norm_layer(outplanes))


class SubsamplePad(Function):
    r"""Option A's shortcut as one op: ``z[:, :C] = x[:, :, ::s, ::s]``, zeros elsewhere.

    The backward is the transpose of that copy: the first ``C`` channels of the
    gradient go back to the pixels that were kept; skipped pixels and the padded
    channels get nothing.

    Both results keep ``x``'s memory layout (``zeros_like(x, shape=...)``): an NCHW result
    added to a channels-last branch made the whole stage NCHW, and each later convolution
    copied its input back (5 layout copies a ResNet-20 step; about 6-16 ms of CPU).
    """

    def forward(self, x: np.ndarray, *, stride: int, out_channels: int) -> np.ndarray:
        kept = x[:, :, ::stride, ::stride]
        self.shape, self.stride, self.channels = x.shape, stride, x.shape[1]
        out = np.zeros_like(x, shape=(x.shape[0], out_channels, *kept.shape[2:]))
        out[:, : x.shape[1]] = kept
        return out

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        dx = np.zeros_like(grad, shape=self.shape)
        dx[:, :, :: self.stride, :: self.stride] = grad[:, : self.channels]
        return (dx,)


class PadShortcut(nn.Module):
    """Option A of the ResNet paper: a parameter-free shortcut for a shape change.

    It keeps every ``stride``-th pixel and appends ``outplanes - inplanes`` zero
    channels, so the comparison of residual and plain networks adds no parameters.

    >>> import tinyres as tr
    >>> x = tr.arange(8.0).view(1, 2, 2, 2)
    >>> PadShortcut(2, 3, stride=2)(x).view(-1)
    tensor([0., 4., 0.], shape=(3,), dtype=float32)
    """

    def __init__(self, inplanes: int, outplanes: int, stride: int):
        super().__init__()
        if outplanes < inplanes or stride < 1:
            raise ValueError(
                f"PadShortcut pads channels and subsamples: need outplanes >= inplanes and "
                f"stride >= 1, got {inplanes} -> {outplanes} channels, stride {stride}"
            )
        self.inplanes, self.outplanes, self.stride = inplanes, outplanes, stride

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.inplanes:
            raise ValueError(
                f"PadShortcut expects (N, {self.inplanes}, H, W) input, got shape {x.shape}"
            )
        return SubsamplePad.apply(x, stride=self.stride, out_channels=self.outplanes)

    def extra_repr(self) -> str:
        return f"{self.inplanes}, {self.outplanes}, stride={self.stride}"


def _check_shortcut(name: str, inplanes: int, outplanes: int, stride: int, downsample) -> None:
    if downsample is None and (stride != 1 or inplanes != outplanes):
        raise ValueError(
            f"{name}: {inplanes} -> {outplanes} channels with stride {stride} changes the "
            "shape, so the identity shortcut cannot be added; pass a downsample module "
            "(projection_shortcut or PadShortcut)"
        )


class ResidualBlock(nn.Module):
    """What every block shares: the arguments, the shortcut check, ``relu(F(x) + s(x))``.

    A block class writes only ``make_layers`` (its layers, in torchvision's order, so
    printing and state dicts match) and F, as ``before_last_bn`` and ``last_bn`` (``branch``
    composes them; a subclass may write ``branch`` instead, and then forward runs it as
    written, unfused); ``norm_layer(channels)`` and
    ``activation()`` build the normalisation and non-linearity (BatchNorm2d and ReLU by
    default), and the attribute keeps torchvision's name ``relu`` whatever the activation.
    ``stride`` goes to the branch; ``downsample`` (when given) maps ``x`` to the output's
    shape. ``options`` go to ``make_layers`` (``Bottleneck``'s ``groups`` and ``base_width``).
    """

    expansion = 1
    has_shortcut = True

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormLayer | None = None,
        activation: Activation | None = None,
        **options,
    ):
        super().__init__()
        if self.has_shortcut:
            _check_shortcut(type(self).__name__, inplanes, planes * self.expansion, stride, downsample)
        norm_layer, activation = norm_layer or nn.BatchNorm2d, activation or nn.ReLU
        self.make_layers(inplanes, planes, stride, norm_layer, activation, **options)
        self.downsample = downsample
        self.stride = stride

    def make_layers(
        self, inplanes: int, planes: int, stride: int, norm_layer: NormLayer, activation: Activation
    ) -> None:
        """Make the branch's layers as attributes (``conv1``, ``bn1``, ``relu``, ...)."""
        raise NotImplementedError

    def branch(self, x: Tensor) -> Tensor:
        """The residual function F(x): ``before_last_bn``, then the last BN."""
        return self.last_bn()(self.before_last_bn(x))

    def before_last_bn(self, x: Tensor) -> Tensor:
        """F(x) up to (not including) its last BN."""
        raise NotImplementedError

    def last_bn(self) -> nn.Module:
        """The BN that ends the branch (whose zero weight silences it: ``zero_init_residual``)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        if type(self).branch is ResidualBlock.branch:
            # The last BN, the add and the ReLU as one op when nothing observes them
            # (tinyres.nn.fusion): it stores the block's output only, not also BN's
            # output and the sum (-42 MB of a ResNet-20 step's 211, benchmarks/README.md).
            return batch_norm_add_relu(self.last_bn(), self.relu, self.before_last_bn(x), identity)
        out = self.branch(x)
        out = out + identity  # out of place: tinyres.viz traces tensor objects
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 conv-BN layers and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x))``.

    ``stride`` is applied by ``conv1``; the arguments are ``ResidualBlock``'s.

    >>> import tinyres as tr
    >>> BasicBlock(8, 8)(tr.zeros(2, 8, 5, 5)).shape
    tinyres.Size([2, 8, 5, 5])
    """

    def make_layers(
        self, inplanes: int, planes: int, stride: int, norm_layer: NormLayer, activation: Activation
    ) -> None:
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = activation()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)

    def before_last_bn(self, x: Tensor) -> Tensor:
        """The residual function F(x), conv-BN-ReLU-conv-BN, up to bn2 (``branch`` adds it)."""
        # relu(bn1(...)) as one op when nothing observes the pair (tinyres.nn.fusion).
        return self.conv2(batch_norm_relu(self.bn1, self.relu, self.conv1(x)))

    def last_bn(self) -> nn.Module:
        return self.bn2


class PlainBlock(BasicBlock):
    """The same layers as ``BasicBlock`` with no shortcut: ``relu(F(x))``.

    The paper's plain networks stack these; comparing them with residual networks of
    the same depth shows the degradation problem. It takes no ``downsample``.

    >>> import tinyres as tr
    >>> PlainBlock(4, 8, stride=2)(tr.zeros(1, 4, 6, 6)).shape
    tinyres.Size([1, 8, 3, 3])
    """

    has_shortcut = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, **options):
        super().__init__(inplanes, planes, stride, None, **options)

    def forward(self, x: Tensor) -> Tensor:
        if type(self).branch is ResidualBlock.branch:  # the last BN and the ReLU as one op: nn.fusion
            return batch_norm_relu(self.last_bn(), self.relu, self.before_last_bn(x))
        return self.relu(self.branch(x))


class Bottleneck(ResidualBlock):
    """1x1 reduce to ``width``, 3x3 (carrying the stride), 1x1 expand to ``4 * planes``.

    The 1x1 convolutions make a 256-channel block cost about as much as a 64-channel
    BasicBlock. The stride sits on the 3x3 convolution as in torchvision ("v1.5"); the
    original paper put it on the first 1x1. ``width = planes * base_width / 64 * groups``
    as torchvision: ResNeXt ("Aggregated Residual Transformations", Xie et al., 2017) uses
    ``groups`` parallel paths in the 3x3, wide ResNets a larger ``base_width`` (both
    keyword arguments, after ``ResidualBlock``'s).

    >>> import tinyres as tr
    >>> block = Bottleneck(16, 4)
    >>> block(tr.zeros(1, 16, 3, 3)).shape
    tinyres.Size([1, 16, 3, 3])
    """

    expansion = 4

    def make_layers(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        norm_layer: NormLayer,
        activation: Activation,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = activation()

    def before_last_bn(self, x: Tensor) -> Tensor:
        """The residual function F(x), (conv-BN-ReLU) twice then conv-BN, up to bn3."""
        out = batch_norm_relu(self.bn1, self.relu, self.conv1(x))  # see tinyres.nn.fusion
        out = batch_norm_relu(self.bn2, self.relu, self.conv2(out))
        return self.conv3(out)

    def last_bn(self) -> nn.Module:
        return self.bn3


class PreActBlock(ResidualBlock):
    r"""Pre-activation block: ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``.

    Nothing follows the addition, so the shortcut path from any block to any later
    one is a pure sum: :math:`x_L = x_l + \sum_i \mathcal{F}(x_i)`. A projecting
    ``downsample`` reads the pre-activated input ``relu(bn1(x))``, as in the authors'
    code; an identity shortcut carries ``x`` itself. The network must apply a final
    BN-ReLU after the last block (``CifarResNet`` does).

    >>> import tinyres as tr
    >>> PreActBlock(8, 8)(tr.zeros(2, 8, 4, 4)).shape
    tinyres.Size([2, 8, 4, 4])
    """

    def make_layers(
        self, inplanes: int, planes: int, stride: int, norm_layer: NormLayer, activation: Activation
    ) -> None:
        self.bn1 = norm_layer(inplanes)
        self.relu = activation()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)

    def branch(self, x: Tensor) -> Tensor:
        """The residual function F(x): BN-ReLU-conv-BN-ReLU-conv; the block is x + F(x)."""
        return self._branch_from(batch_norm_relu(self.bn1, self.relu, x))

    def _branch_from(self, pre: Tensor) -> Tensor:
        # F after its first BN-ReLU, which forward also feeds a projecting shortcut:
        # computing it once keeps training-mode BN statistics updated once per call.
        return self.conv2(batch_norm_relu(self.bn2, self.relu, self.conv1(pre)))

    def forward(self, x: Tensor) -> Tensor:
        pre = batch_norm_relu(self.bn1, self.relu, x)  # see tinyres.nn.fusion
        identity = x if self.downsample is None else self.downsample(pre)
        return self._branch_from(pre) + identity

    def last_bn(self) -> nn.Module:
        """The BN whose zero weight silences the branch (``zero_init_residual``)."""
        return self.bn2


RESIDUAL_BLOCKS = (BasicBlock, Bottleneck, PreActBlock)


def make_stage(
    block: type[nn.Module],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
    shortcut: Callable[[int, int, int], nn.Module],
    **block_options,
) -> nn.Sequential:
    """``blocks`` blocks; the first carries ``stride`` and the shortcut for the shape change.

    ``shortcut(inplanes, outplanes, stride)`` builds that first block's ``downsample``
    when the shape changes (not otherwise, and never for a block without shortcut).
    ``block_options`` (``norm_layer``, ``activation``) go to every block.

    >>> stage = make_stage(BasicBlock, 16, 32, 2, 2, projection_shortcut)
    >>> [type(m).__name__ for m in stage.children()]
    ['BasicBlock', 'BasicBlock']
    """
    mine = learner("make_stage")  # the learner's blocks and make_layer inside tinyres.course.mine
    stage = None if mine is None else mine(block, inplanes, planes, blocks, stride, shortcut, block_options)
    if stage is not None:
        return stage
    outplanes = planes * block.expansion
    first = {}
    if block.has_shortcut:
        needs_shortcut = stride != 1 or inplanes != outplanes
        first["downsample"] = shortcut(inplanes, outplanes, stride) if needs_shortcut else None
    layers = [block(inplanes, planes, stride, **first, **block_options)]
    layers += [block(outplanes, planes, **block_options) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_resnet_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """Re-initialise as torchvision: Kaiming normal (fan_out, ReLU) convs, BN weight 1, bias 0.

    Linear layers keep PyTorch's default initialisation. With ``zero_init_residual``
    the last BN of every residual branch gets weight 0, so each block starts as its
    shortcut (Goyal et al., "Accurate, Large Minibatch SGD", 2017).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            init.ones_(m.weight)
            init.zeros_(m.bias)
    if not zero_init_residual:
        return
    for m in model.modules():
        if isinstance(m, RESIDUAL_BLOCKS) and m.has_shortcut:
            bn = m.last_bn()
            if not isinstance(bn, nn.BatchNorm2d):
                raise ValueError(
                    f"zero_init_residual needs a BatchNorm2d at the end of each branch, "
                    f"found {type(bn).__name__}"
                )
            init.zeros_(bn.weight)
