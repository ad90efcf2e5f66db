r"""Exercise 18 (lesson 05): Winograd's F(2, 3) transforms from three interpolation points.

F(2, 3) computes two outputs of a 3-tap correlation, y_i = sum_k d_{i+k} g_k for
d of length 4, with 4 multiplications instead of 6:

.. math::  y = A^\top \big[(G g) \odot (B^\top d)\big]

The lesson uses ``winograd_reference.derive``; derive the three matrices yourself from
the points p0, p1, p2 and the point at infinity (Toom-Cook). Hints, not the answer:
the map a -> g * a (the *convolution* of g with a 2-vector a) is a polynomial product,
which evaluation at 4 points turns into 4 products and interpolation turns back; the
correlation you want is the transpose of that map. The points are distinct and finite.

Return (AT (2, 4), G (4, 3), BT (4, 4)) as float64 arrays; ``correlate_f23`` applies
them to d (4,) and g (3,) and returns y (2,) in d's dtype.

Check your work: ``tinyres check ex18``.
"""

from __future__ import annotations

import numpy as np


def winograd_f23(points: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AT, G, BT) of F(2, 3) for the interpolation points ``points`` and infinity."""
    raise NotImplementedError


def correlate_f23(d: np.ndarray, g: np.ndarray, transforms: tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]) -> np.ndarray:
    """y (2,) = AT @ ((G @ g) * (BT @ d)), in d's dtype."""
    raise NotImplementedError
