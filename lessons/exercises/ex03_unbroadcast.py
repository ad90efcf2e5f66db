"""Exercise 3 (lesson 02): ``unbroadcast``, the gradient of a broadcast.

If ``y = x + b`` broadcast ``b`` of shape (3,) against ``x`` of shape (2, 3), each
element of ``b`` was used twice, so dL/db is the sum of dL/dy over the copies. The
copies lie along the leading axes broadcasting added, and along every axis where the
input had size 1 and the output did not.

Check your work: ``tinyres check ex03``.
"""

from __future__ import annotations

import numpy as np


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` (the broadcast output's shape) down to ``shape`` (an input's shape).

    Examples: (2, 3) -> (3,) sums axis 0; (2, 3) -> (2, 1) sums axis 1 keeping it;
    (4, 2, 3) -> (2, 1) sums axis 0, then axis 2 keeping it.
    """
    raise NotImplementedError
