"""ReLU's kernels in NumPy: the oracle for ``relu_numba``.

z = max(x, 0);  dz/dx = 1 where x > 0, else 0 (PyTorch's choice at 0). The output z
is what backward keeps: z > 0 exactly where x > 0, and z is alive anyway as the next
layer's input, so no mask array is stored. NaN propagates, as in ``torch.relu``.

>>> import numpy as np
>>> z, saved = forward(np.array([-1.0, 0.0, 2.0]))
>>> z, backward(np.full(3, 3.0), saved)
(array([0., 0., 2.]), array([0., 0., 3.]))
"""

from __future__ import annotations

import numpy as np


def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, saved): the output, and what backward needs (the output itself)."""
    z = np.maximum(x, x.dtype.type(0))
    return z, z


def backward(grad: np.ndarray, z: np.ndarray) -> np.ndarray:
    """grad where the forward output z is positive, else 0."""
    return grad * (z > 0)
