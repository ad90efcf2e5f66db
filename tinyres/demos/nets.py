"""The demo networks: plain and residual stacks of equal depth, width and initialisation.

Every gradient-flow demo compares a *plain* net with a *residual* one that differs in one
thing only, the identity shortcut. The blocks are the models' own ``BasicBlock`` and
``PlainBlock`` (``tinyres.models.blocks``), the ResNet paper's two-convolution block with
the activation and the normalisation as options::

    PlainBlock:  x -> conv -> norm -> act -> conv -> norm ------> act -> out
    BasicBlock:  x -> conv -> norm -> act -> conv -> norm -> (+x) -> act -> out

A ``DemoNet`` of depth ``d`` is a one-stage ``CifarResNet`` (``tinyres.models.cifar``),
with the same attribute names: a stem convolution, ``(d - 2) / 2`` blocks in ``layer1``,
global average pooling and a linear classifier, so it counts ``d`` weighted layers as the
paper's 6n+2 nets do. It differs from ``CifarResNet`` in three ways, all for the sake of
a clean measurement:

- one width and resolution throughout (no downsampling), so every block's input has the
  same shape, the shortcut is a pure identity, and the gradient reaching each block can
  be compared block by block;
- without normalisation, the convolutions are PyTorch's default layer, *with* a bias
  (the models' convolutions have none, as a bias before batch norm is cancelled by its
  mean). Without a bias, a ReLU net at PyTorch's default initialisation also loses its
  *forward* signal: at depth 110 the activations underflow to exactly 0 in float32, every
  gradient is then 0, and the first/last gradient ratio is 0/0;
- the initialisation is an option (``CifarResNet`` always re-initialises as torchvision
  does). ``init``, applied to the convolutions:

  - ``"default"``: PyTorch's default, as constructed (Kaiming uniform with a = sqrt(5), so
    Var(w) = 1 / (3 fan_in); bias uniform in ±1/sqrt(fan_in));
  - ``"kaiming"``: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, Var(w) =
    2 / fan_out, biases zero (torchvision's ResNet initialisation);
  - ``"xavier"``: ``xavier_normal_``, Var(w) = 2 / (fan_in + fan_out), biases zero.

The classifier keeps PyTorch's default initialisation in all three, as torchvision's does.

>>> import tinyres as tr
>>> net = make_net(depth=8, residual=True, activation="tanh", init="kaiming", norm="batch")
>>> len(net.layer1), type(net.layer1[0]).__name__
(3, 'BasicBlock')
>>> net(tr.randn(2, 3, 8, 8)).shape
tinyres.Size([2, 10])
"""

from __future__ import annotations

from tinyres import nn
from tinyres.engine import Tensor
from tinyres.models.blocks import BasicBlock, PlainBlock, make_stage
from tinyres.models.cifar import ACTIVATIONS
from tinyres.models.cifar import NORMS as NORM_LAYERS

INITS = ("default", "kaiming", "xavier")
NORMS = ("none", "batch")


def blocks_for_depth(depth: int) -> int:
    """Blocks in a net of ``depth`` weighted layers: stem + 2 per block + classifier.

    >>> [blocks_for_depth(d) for d in (20, 56, 110)]
    [9, 27, 54]
    """
    if depth < 4 or depth % 2:
        raise ValueError(f"depth must be an even number >= 4 (2 + 2 per block), got {depth}")
    return (depth - 2) // 2


class DemoNet(nn.Module):
    """stem (conv, norm, act) -> ``layer1`` (the blocks) -> global average pool -> linear."""

    def __init__(
        self,
        num_blocks: int,
        residual: bool,
        activation: str = "relu",
        norm: str = "none",
        width: int = 16,
        in_channels: int = 3,
        num_classes: int = 10,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        options = {"norm_layer": NORM_LAYERS[norm], "activation": ACTIVATIONS[activation]}
        with_bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=with_bias)
        self.bn1 = NORM_LAYERS[norm](width)
        self.relu = ACTIVATIONS[activation]()  # torchvision's name, whatever the activation
        block = BasicBlock if residual else PlainBlock
        self.layer1 = make_stage(block, width, width, num_blocks, 1, shortcut=None, **options)
        if with_bias:  # swap in PyTorch's default convolution layer (see the module docstring)
            for b in self.layer1:
                b.conv1 = nn.Conv2d(width, width, kernel_size=3, padding=1)
                b.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def stem(self, x: Tensor) -> Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def head(self, x: Tensor) -> Tensor:
        return self.fc(self.avgpool(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer1(self.stem(x)))


def initialise(net: nn.Module, init: str) -> None:
    """Re-initialise every convolution of ``net`` by the scheme ``init`` (see module doc)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "default":
        return
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            if init == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def make_net(
    depth: int,
    residual: bool,
    activation: str = "relu",
    init: str = "default",
    norm: str = "none",
    width: int = 16,
) -> DemoNet:
    """A plain or residual ``DemoNet`` of ``depth`` weighted layers, initialised by ``init``."""
    net = DemoNet(blocks_for_depth(depth), residual, activation, norm, width)
    initialise(net, init)
    return net
