"""The demo networks: plain and residual stacks of equal depth, width and initialisation.

Every gradient-flow demo compares a *plain* net with a *residual* one that differs in one
thing only, the identity shortcut. A block is the ResNet paper's two-convolution block
(section 3.3, Figure 2), with the activation and the normalisation as options::

    plain:     x -> conv -> norm -> act -> conv -> norm ------> act -> out
    residual:  x -> conv -> norm -> act -> conv -> norm -> (+x) -> act -> out

A net of depth ``d`` counts its weighted layers as the paper's CIFAR nets do (6n+2): one
stem convolution, ``(d - 2) / 2`` blocks of two convolutions, and one linear classifier
after global average pooling. Unlike ``tinyres.models``' CIFAR ResNets, all blocks have
the same width and resolution (one stage, no downsampling), so every block's input has the
same shape and the gradient reaching it can be compared block by block, and the shortcut
is a pure identity (no projection, no zero padding). The models' blocks are fixed to ReLU,
batch norm and torchvision's initialisation; these are not, because the demo varies all
three.

Initialisation (``init``), applied to the convolutions:

- ``"default"``: PyTorch's default, as constructed (Kaiming uniform with a = sqrt(5), so
  Var(w) = 1 / (3 fan_in); bias uniform in ±1/sqrt(fan_in)).
- ``"kaiming"``: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, Var(w) =
  2 / fan_out, biases zero (torchvision's ResNet initialisation).
- ``"xavier"``: ``xavier_normal_``, Var(w) = 2 / (fan_in + fan_out), biases zero.

The classifier keeps PyTorch's default initialisation in all three, as torchvision's do.

>>> import tinyres as tr
>>> net = make_net(depth=8, residual=True, activation="tanh", init="kaiming", norm="batch")
>>> len(net.blocks)
3
>>> net(tr.randn(2, 3, 8, 8)).shape
(2, 10)
"""

from __future__ import annotations

from tinyres import nn
from tinyres.engine import Tensor

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
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


class Block(nn.Module):
    """Two 3x3 convolutions of ``width`` channels; with ``residual``, plus the identity."""

    def __init__(self, width: int, residual: bool, activation: str, norm: str):
        super().__init__()
        self.residual = residual
        with_bias = norm == "none"  # a bias before batch norm is cancelled by its mean
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=with_bias)
        self.bn1 = nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()
        self.act1 = ACTIVATIONS[activation]()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=with_bias)
        self.bn2 = nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()
        self.act2 = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + x  # H(x) = F(x) + x: the gradient gets a path that skips F
        return self.act2(out)


class DemoNet(nn.Module):
    """stem (conv, norm, act) -> blocks -> global average pool -> linear."""

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
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=norm == "none"),
            nn.BatchNorm2d(width) if norm == "batch" else nn.Identity(),
            ACTIVATIONS[activation](),
        )
        self.blocks = nn.Sequential(
            *[Block(width, residual, activation, norm) for _ in range(num_blocks)]
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


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
