"""``Sequential``: modules applied one after another.

The modules are registered under the names "0", "1", ... (or the keys of an
``OrderedDict``), which is where state-dict keys such as ``layer1.0.conv1.weight``
get their numbers. An empty ``Sequential()`` returns its input unchanged, which the
seeds use as the identity shortcut of a residual block.

>>> import tinyres as tr
>>> from tinyres import nn
>>> block = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
>>> len(block), type(block[-1]).__name__
(3, 'Linear')
>>> block[:2]
Sequential(
  (0): Linear(in_features=4, out_features=3, bias=True)
  (1): ReLU()
)
>>> x = tr.ones(5, 4)
>>> nn.Sequential()(x) is x
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from tinyres.nn.module import Module


class Sequential(Module):
    """``Sequential(m0, m1, ...)`` or ``Sequential(OrderedDict(name=module, ...))``."""

    def __init__(self, *args: Any):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(args):
                self.add_module(str(index), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        if not -len(items) <= index < len(items):
            raise IndexError(f"index {index} is out of range for a Sequential of length {len(items)}")
        return items[index][1]

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end (named by its position)."""
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input: Any) -> Any:
        for module in self:
            input = module(input)
        return input
