"""``tinyres.summary(model, input_shape)``: a table of layers, shapes, parameters and MACs.

The model runs once on zeros of ``input_shape`` in eval mode under ``no_grad`` (so
BatchNorm's running statistics and the random generator are untouched, and the
training flags are restored afterwards), with a forward hook on every sub-module
recording what it returned.

One row per module, in the order the model defines them, indented by depth: a layer
shows its own parameters; a container (a block, a stage) shows the totals of
everything inside it and the shape of what it returned. A module called more than
once (torchvision's blocks reuse one ``relu``) shows its last output shape and the
multiply-accumulates (MACs) of all its calls.

MACs are counted for the whole batch, one per multiplication that is followed by an
addition:

- ``Conv2d``: ``N * Cout * Ho * Wo * (Cin / groups) * kh * kw``;
- ``Linear``: ``N * in_features * out_features``;
- ``BatchNorm2d``: one per output element (in eval mode it is ``y = a * x + b``);
- activations, pooling, ``Identity`` and the option-A shortcut: none (they compare
  or add, but do not multiply-accumulate).

Bias additions are not counted, as is usual (ResNet-50 at 224x224: 4.1 G MACs).

>>> from tinyres import nn
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
...                       nn.Linear(8 * 4 * 4, 10))
>>> s = summary(model, (1, 3, 4, 4))
>>> s.total_params, s.total_macs
(1506, 4736)
>>> print(s)
layer (type)  output shape  params   MACs
-----------------------------------------
0 (Conv2d)    (1, 8, 4, 4)     216  3,456
1 (ReLU)      (1, 8, 4, 4)       0      0
2 (Flatten)   (1, 128)           0      0
3 (Linear)    (1, 10)        1,290  1,280
-----------------------------------------
input (1, 3, 4, 4) -> output (1, 10)
parameters: 1,506 (trainable 1,506)
multiply-accumulates: 4,736 (4.74 K)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyres import nn
from tinyres.engine import Tensor, no_grad


@dataclass
class LayerRow:
    """One module of the summary."""

    name: str
    kind: str
    depth: int
    output_shape: tuple[int, ...] | None = None
    params: int = 0
    macs: int = 0
    calls: int = 0


@dataclass
class ModelSummary:
    """The rows and totals; ``str()`` (and the REPL) show them as a table."""

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    total_params: int
    trainable_params: int
    total_macs: int
    column_names: tuple[str, ...] = field(default=("layer (type)", "output shape", "params", "MACs"))

    def row(self, name: str) -> LayerRow:
        """The row of the module called ``name`` (``"layer1.0.conv1"``)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no module named {name!r} in the summary")

    def __str__(self) -> str:
        cells = [
            (
                "  " * (r.depth - 1) + f"{r.name} ({r.kind})",
                "-" if r.output_shape is None else str(r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}",
            )
            for r in self.rows
        ]
        table = [self.column_names, *cells]
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        line = "-" * (sum(widths) + 6)

        def fmt(row: tuple[str, ...]) -> str:
            return (
                f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  "
                f"{row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}"
            ).rstrip()

        out = [fmt(self.column_names), line, *(fmt(c) for c in cells), line]
        out.append(f"input {self.input_shape} -> output {self.output_shape}")
        out.append(f"parameters: {self.total_params:,} (trainable {self.trainable_params:,})")
        out.append(f"multiply-accumulates: {self.total_macs:,} ({_human(self.total_macs)})")
        return "\n".join(out)

    __repr__ = __str__


def _human(n: float) -> str:
    """``4_089_184_256 -> '4.09 G'``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


def layer_macs(module: nn.Module, output: Tensor) -> int:
    """Multiply-accumulates of one call of ``module`` that produced ``output``.

    >>> from tinyres import nn
    >>> import tinyres as tr
    >>> conv = nn.Conv2d(4, 8, 3)
    >>> layer_macs(conv, tr.zeros(2, 8, 5, 5))  # 2*8*5*5 outputs, 4*3*3 MACs each
    14400
    """
    if isinstance(module, nn.Conv2d):
        weight = module.weight.shape  # (Cout, Cin / groups, kh, kw)
        return output.numel() * int(np.prod(weight[1:]))
    if isinstance(module, nn.Linear):
        return output.numel() * module.weight.shape[1]
    if isinstance(module, nn.BatchNorm2d):
        return output.numel()
    return 0


def _check_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"summary: input_shape must be a sequence of ints, got {input_shape!r}") from None
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"summary: input_shape must be positive sizes like (1, 3, 224, 224), got {shape}")
    return shape


def summary(
    model: nn.Module, input_shape: Any, depth: int | None = None, dtype: Any = np.float32
) -> ModelSummary:
    """Run ``model`` once on zeros of ``input_shape`` and tabulate its modules.

    ``depth`` limits the rows to modules at most that deep (1: the model's direct
    children); totals always cover the whole model.
    """
    shape = _check_shape(input_shape)
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: expected an nn.Module, got {type(model).__name__}")
    rows: dict[int, LayerRow] = {}
    handles = []
    for name, module in model.named_modules():
        if module is model and not _is_leaf(model):
            continue  # the totals describe the model itself
        name = name or "model"  # a bare layer has no name of its own
        params = sum(p.numel() for p in module.parameters())  # a container: all inside it
        row = LayerRow(name, type(module).__name__, name.count(".") + 1, params=params)
        rows[id(module)] = row

        def record(mod: nn.Module, inputs: tuple, output: Any, row: LayerRow = row) -> None:
            row.calls += 1
            if isinstance(output, Tensor):
                row.output_shape = tuple(output.shape)
                row.macs += layer_macs(mod, output)

        handles.append(module.register_forward_hook(record))
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_grad():
            output = model(Tensor(np.zeros(shape, dtype=dtype)))
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in modes:
            m.training = mode
    leaves = [m for m in model.modules() if _is_leaf(m)]
    for m in model.modules():  # a container's MACs are those of the layers inside it
        if m is not model and not _is_leaf(m):
            rows[id(m)].macs = sum(rows[id(leaf)].macs for leaf in m.modules() if _is_leaf(leaf))
    params = list(model.parameters())
    shown = [r for r in rows.values() if depth is None or r.depth <= depth]
    return ModelSummary(
        rows=shown,
        input_shape=shape,
        output_shape=tuple(output.shape) if isinstance(output, Tensor) else None,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_macs=sum(rows[id(m)].macs for m in leaves),
    )


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None

