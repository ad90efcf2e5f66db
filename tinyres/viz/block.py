"""Draw a residual block, or a whole network, from the module itself.

Nothing here knows what a ``BasicBlock`` looks like. ``draw_block`` runs the module once
on a small input with a forward hook on every layer, so it sees which layer ran on
which tensor, in order. The output of a residual block is (a ReLU of) a sum, and the
sum's two inputs lead back, layer by layer, to the block's input ``x``:

- the longer way back is the residual branch F(x) (conv, BN, ReLU, ...);
- the shorter way is the shortcut: no layers at all (identity), a 1x1 conv + BN
  (projection, option B) or a subsample-and-pad layer (option A);
- layers that both ways share (the pre-activation block's BN-ReLU before its
  projection) are drawn once, before the fork;
- layers after the sum are drawn below the "+" (the final ReLU; none for a
  pre-activation block). A block with no sum (a plain block) is a single column.

A network (a module whose children include stages: ``Sequential`` containers of
blocks) is drawn as a column: stem layers, one box per stage summarising its first
block the way the ResNet paper's table does (``[1x1, 64 | 3x3, 64 | 1x1, 256] x 3``),
pooling and classifier, each with its output shape.

>>> from tinyres.models import Bottleneck, projection_shortcut
>>> fig = draw_block(Bottleneck(64, 64, downsample=projection_shortcut(64, 256, 1)))
>>> [t.get_text() for t in fig.axes[0].texts if "conv" in t.get_text()]  # branch, then shortcut
['1x1 conv, 64', '3x3 conv, 64', '1x1 conv, 256', '1x1 conv, 256']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from tinyres import nn
from tinyres.creation import zeros
from tinyres.engine import Function, Tensor, _node, no_grad
from tinyres.models.blocks import PadShortcut
from tinyres.models.resnet import ResNet
from tinyres.viz.canvas import arrow, box, circle, crop_bottom, new_canvas

_W, _H = 2.1, 0.42  # layer box, inches
_STEP = 0.72  # vertical distance between the centres of consecutive boxes
_SIDE = 2.6  # horizontal distance from the branch to the shortcut column
_STAGE_W, _STAGE_H = 4.0, 0.95

_ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid)


@dataclass
class Call:
    """One run of a layer during the recorded forward pass."""

    name: str
    module: nn.Module
    input: Tensor
    output: Tensor
    # The graph nodes (grad_fn, or the leaf) of input and output when the layer ran: an
    # in-place op later (``out += identity``) gives the same tensor object a new grad_fn.
    input_node: Any = None
    output_node: Any = None


@dataclass
class BlockLayout:
    """A block's layers, sorted into the parts of the diagram (see the module doc)."""

    before: list[Call] = field(default_factory=list)  # shared by branch and shortcut
    branch: list[Call] = field(default_factory=list)
    shortcut: list[Call] | None = None  # None: no shortcut at all (plain block)
    merge: str = "+"
    after: list[Call] = field(default_factory=list)
    in_channels: int = 0
    out_channels: int = 0


def layer_label(module: nn.Module) -> str:
    """The paper's short name for a layer: "3x3 conv, 64, /2", "BN", "ReLU", ...

    >>> layer_label(nn.Conv2d(64, 128, 3, stride=2, padding=1))
    '3x3 conv, 128, /2'
    >>> layer_label(nn.MaxPool2d(3, stride=2, padding=1))
    '3x3 max pool, /2'
    """
    def stride_note(stride: int | tuple[int, ...]) -> str:
        s = stride if isinstance(stride, int) else stride[0]
        return f", /{s}" if s > 1 else ""

    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return f"{kh}x{kw} conv, {module.out_channels}{stride_note(module.stride)}"
    if isinstance(module, nn.BatchNorm2d):
        return "BN"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        kind = "max" if isinstance(module, nn.MaxPool2d) else "avg"
        return f"{k}x{k} {kind} pool{stride_note(module.stride)}"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "global avg pool"
    if isinstance(module, nn.Linear):
        return f"fc, {module.out_features}"
    if isinstance(module, PadShortcut):
        extra = module.outplanes - module.inplanes
        return f"subsample /{module.stride}, pad {extra} zero ch."
    return type(module).__name__


def _color(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "#cfe2f3"
    if isinstance(module, nn.BatchNorm2d):
        return "#fff2cc"
    if isinstance(module, _ACTIVATIONS):
        return "#f4cccc"
    if isinstance(module, nn.Linear):
        return "#d9ead3"
    return "#e6e0f0"


def _input_channels(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
        if isinstance(m, nn.BatchNorm2d):
            return m.num_features
    raise ValueError(
        f"draw_block: {type(module).__name__} has no Conv2d or BatchNorm2d, so its input "
        "channels are unknown; expected a residual block or a network of them"
    )


def _run_recorded(module: nn.Module, x: Tensor, leaves_only: bool) -> tuple[list[Call], Tensor]:
    """Run ``module(x)`` in eval mode (running statistics untouched), recording every
    call of its layers (``leaves_only``) or of its direct children; the mode is restored."""
    if leaves_only:
        watched = [(n, m) for n, m in module.named_modules() if not list(m.children()) and n]
    else:
        watched = list(module.named_children())
    # Identity layers (e.g. norm="none") pass their input through untouched: skip them.
    watched = [(n, m) for n, m in watched if not isinstance(m, nn.Identity)]
    calls: list[Call] = []
    handles = []
    for name, m in watched:
        def hook(m: nn.Module, inputs: tuple, output: Tensor, name: str = name) -> None:
            out_node = _node(output)
            # An in-place layer (ReLU(inplace=True)) returns its input: its input node is
            # the one its op recorded, not the input tensor's grad_fn now.
            in_place = output is inputs[0] and isinstance(out_node, Function)
            in_node = out_node.parents[0] if in_place else _node(inputs[0])
            calls.append(Call(name, m, inputs[0], output, in_node, out_node))

        handles.append(m.register_forward_hook(hook))
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        out = module(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return calls, out


def analyse_block(module: nn.Module) -> BlockLayout:
    """Sort a block's layers into before / branch / shortcut / after (module doc).

    >>> from tinyres.models import BasicBlock
    >>> parts = analyse_block(BasicBlock(16, 16))
    >>> [c.name for c in parts.branch], parts.shortcut, [c.name for c in parts.after]
    (['conv1', 'bn1', 'relu', 'conv2', 'bn2'], [], ['relu'])
    """
    channels = _input_channels(module)
    # Gradients on, so the graph records the sum that joins branch and shortcut.
    x = zeros(1, channels, 8, 8, requires_grad=True)
    calls, out = _run_recorded(module, x, leaves_only=True)
    made_by = {id(c.output_node): c for c in calls}
    name = type(module).__name__

    def back_to(node: Any, stop: Any) -> list[Call]:
        """The layers that turned ``stop`` into ``node``, in forward order."""
        path = []
        while node is not stop:
            if id(node) not in made_by:
                op = type(node).__name__ if isinstance(node, Function) else "no layer"
                raise ValueError(
                    f"draw_block: cannot follow {name}'s forward: a tensor was made by "
                    f"{op} between its layers, expected a chain of layers and one sum"
                )
            call = made_by[id(node)]
            path.append(call)
            node = call.input_node
        return path[::-1]

    parts = BlockLayout(in_channels=channels, out_channels=out.shape[1])
    joint = _node(out)
    while id(joint) in made_by:  # walk back through the layers after the sum
        joint = made_by[id(joint)].input_node
    if joint is x:  # no sum: a plain block
        parts.branch = back_to(_node(out), x)
        return parts
    operands = [p for p in joint.parents if p is not None]
    if len(operands) != 2:
        raise ValueError(
            f"draw_block: {name} joins its paths with {type(joint).__name__} of "
            f"{len(operands)} tensors, expected a sum of two"
        )
    parts.merge = "+" if type(joint).__name__ == "Add" else type(joint).__name__
    parts.after = back_to(_node(out), joint)
    first, second = (back_to(p, x) for p in operands)
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] is second[shared]:
        shared += 1
    parts.before = first[:shared]
    parts.branch, parts.shortcut = first[shared:], second[shared:]
    if len(parts.shortcut) > len(parts.branch):
        parts.branch, parts.shortcut = parts.shortcut, parts.branch
    return parts


def shortcut_label(parts: BlockLayout) -> str:
    """"identity", "projection: 1x1 conv, 256 + BN", "option A: ..." or "none"."""
    if parts.shortcut is None:
        return "none (plain)"
    if not parts.shortcut:
        return "identity"
    labels = [layer_label(c.module) for c in parts.shortcut]
    if any(isinstance(c.module, PadShortcut) for c in parts.shortcut):
        return "option A: " + " + ".join(labels)
    return "projection: " + " + ".join(labels)


def _is_stage(module: nn.Module) -> bool:
    """A Sequential of blocks (modules that have layers of their own)."""
    return isinstance(module, nn.Sequential) and any(list(m.children()) for m in module.children())


def draw_block(module: nn.Module, input_size: int | None = None) -> Figure:
    """Draw a residual block, a plain block, or a whole network as a column of stages.

    A block is drawn with its branch down the middle, the shortcut on the right
    (identity, projection or option A), the "+" and what follows it. A network (a
    module with stages, or a stage itself) is drawn as a column with each layer's output
    shape for a ``1 x C x input_size x input_size`` input (default 224 for the ImageNet
    ``ResNet``, 32 otherwise). Returns the matplotlib ``Figure``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"draw_block: expected a tinyres.nn.Module, got {type(module).__name__}")
    if _is_stage(module) or any(_is_stage(m) for m in module.children()):
        size = input_size or (224 if isinstance(module, ResNet) else 32)
        return _draw_network(module, size)
    return _draw_block(module, analyse_block(module))


def _chain(ax, x: float, top: float, calls: list[Call]) -> float:
    """Boxes for ``calls`` down from ``top``, joined by arrows; returns the y of the
    last box's bottom edge (or ``top`` when there are none)."""
    y = top
    for call in calls:
        centre = y - _STEP + _H / 2
        arrow(ax, (x, y), (x, centre + _H / 2))
        box(ax, x, centre, _W, _H, layer_label(call.module), _color(call.module))
        y = centre - _H / 2
    return y


def _draw_block(module: nn.Module, parts: BlockLayout) -> Figure:
    rows = 2 + len(parts.before) + len(parts.branch) + len(parts.after) + (parts.shortcut is not None)
    plain = parts.shortcut is None
    side = _side(parts)
    width = 2 * 0.3 + _W + 0.5 + (0.3 if plain else side + 0.6)
    height = rows * _STEP + 1.1
    fig, ax = new_canvas(width, height)
    cx = 0.3 + _W / 2 + 0.5
    title = f"{type(module).__name__}: {parts.in_channels} → {parts.out_channels} channels"
    if plain:
        title += ", no shortcut"
    ax.text(width / 2, height - 0.25, title, ha="center", va="center", fontsize=10, fontweight="bold")

    y_in = height - 0.75
    box(ax, cx, y_in, _W, _H, f"x  ({parts.in_channels} channels)", "#ffffff")
    fork = _chain(ax, cx, y_in - _H / 2, parts.before)
    branch_end = _chain(ax, cx, fork, parts.branch)
    branch_mid = (fork + branch_end) / 2
    # A residual branch learns F(x) = H(x) - x; a plain block must learn H(x) itself.
    ax.text(cx - _W / 2 - 0.15, branch_mid, "H(x)" if plain else "F(x)",
            ha="right", va="center", fontsize=10, style="italic")
    y = branch_end
    if parts.shortcut is not None:
        radius = 0.2
        y_plus = y - _STEP + _H / 2
        arrow(ax, (cx, y), (cx, y_plus + radius))
        circle(ax, cx, y_plus, radius, parts.merge, "#fff9c4")
        _draw_shortcut(ax, cx, fork, y_plus, radius, parts)
        y = y_plus - radius
    y = _chain(ax, cx, y, parts.after)
    y_out = y - _STEP + _H / 2
    arrow(ax, (cx, y), (cx, y_out + _H / 2))
    box(ax, cx, y_out, _W, _H, f"output  ({parts.out_channels} channels)", "#ffffff")
    crop_bottom(fig, ax, y_out - _H / 2)
    return fig


def _side(parts: BlockLayout) -> float:
    """How far right of the branch the shortcut runs: a column for its layers, or a
    lane just beside the branch for the identity."""
    return _SIDE if parts.shortcut else _W / 2 + 0.7


def _draw_shortcut(ax, cx: float, fork: float, y_plus: float, radius: float, parts: BlockLayout) -> None:
    """The shortcut: from the fork, right, down the side column (through its layers,
    if any) and into the "+" from the right."""
    side = cx + _side(parts)
    # Leave the box above the branch at its bottom edge, slightly right of the branch arrow.
    start = (cx + 0.25, fork)
    turn = fork - 0.15
    label = shortcut_label(parts)
    if not parts.shortcut:
        arrow(ax, start, (cx + radius, y_plus), via=((cx + 0.25, turn), (side, turn), (side, y_plus)),
              label=label)
        return
    n = len(parts.shortcut)
    top = (fork + y_plus) / 2 + n * _STEP / 2
    arrow(ax, start, (side, top), via=((cx + 0.25, turn), (side, turn)))
    end = _chain(ax, side, top, parts.shortcut)
    arrow(ax, (side, end), (cx + radius, y_plus), via=((side, y_plus),))
    ax.text(side, top + 0.1, label.split(":")[0], ha="center", va="bottom", fontsize=8, style="italic")


def _stage_text(name: str, stage: nn.Module) -> str:
    blocks = list(stage.children())
    first = analyse_block(blocks[0])
    layers = " | ".join(layer_label(c.module).split(", /")[0].replace(" conv", "")
                        for c in first.before + first.branch if isinstance(c.module, nn.Conv2d))
    kind = type(blocks[0]).__name__
    return (f"{name}: {len(blocks)} × {kind}\n[{layers}] × {len(blocks)}\n"
            f"first shortcut: {shortcut_label(first)}")


def _draw_network(module: nn.Module, size: int) -> Figure:
    channels = _input_channels(module)
    with no_grad():
        calls, out = _run_recorded(module, zeros(1, channels, size, size), leaves_only=False)
    shape = "×".join(map(str, out.shape[1:]))
    entries = []  # (text, colour, is_stage)
    for call in calls:
        out_shape = "×".join(map(str, call.output.shape[1:]))
        if _is_stage(call.module):
            entries.append((f"{_stage_text(call.name, call.module)}\n→ {out_shape}", "#cfe2f3", True))
        else:
            entries.append((f"{layer_label(call.module)}  → {out_shape}", _color(call.module), False))
    heights = [_STAGE_H if stage else _H for _, _, stage in entries]
    gap = _STEP - _H
    total = sum(heights) + gap * (len(entries) + 1) + 2 * _H
    width, height = _STAGE_W + 0.8, total + 0.9
    fig, ax = new_canvas(width, height)
    params = sum(p.numel() for p in module.parameters())
    ax.text(width / 2, height - 0.25, f"{type(module).__name__}: {params / 1e6:.2f} M parameters",
            ha="center", va="center", fontsize=10, fontweight="bold")
    cx = width / 2
    y = height - 0.55
    box(ax, cx, y - _H / 2, _STAGE_W, _H, f"input  1×{channels}×{size}×{size}", "#ffffff")
    y -= _H
    for (text, color, _), h in zip(entries, heights):
        arrow(ax, (cx, y), (cx, y - gap))
        y -= gap
        box(ax, cx, y - h / 2, _STAGE_W, h, text, color)
        y -= h
    arrow(ax, (cx, y), (cx, y - gap))
    box(ax, cx, y - gap - _H / 2, _STAGE_W, _H, f"output  {shape}", "#ffffff")
    return fig

