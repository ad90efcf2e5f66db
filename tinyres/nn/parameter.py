"""``Parameter``: a tensor that a ``Module`` owns and an optimiser updates.

A ``Parameter`` is an ordinary leaf ``Tensor`` that requires grad by default. The
only thing special about it is its type: assigning one to a module attribute
(``self.weight = Parameter(...)``) registers it, so ``module.parameters()`` finds it.

>>> import numpy as np
>>> from tinyres.nn import Parameter
>>> w = Parameter(np.zeros((2, 3), dtype=np.float32))
>>> w.requires_grad, w.shape
(True, tinyres.Size([2, 3]))
>>> w
Parameter containing:
tensor([[0., 0., 0.],
        [0., 0., 0.]], shape=(2, 3), dtype=float32, requires_grad=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Tensor


class Parameter(Tensor):
    """A leaf tensor registered by a ``Module``; it shares ``data``'s memory.

    ``data`` may be a ``Tensor`` or an array; an empty ``Parameter()`` holds a
    float32 array of shape (0,), as ``torch.nn.Parameter()`` does.
    """

    def __init__(self, data: Any = None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        if isinstance(data, Tensor):
            data = data._data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
