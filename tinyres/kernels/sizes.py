"""Sizes shared by the kernels, and the cheap checks a public kernel runs on its arrays.

``Pair`` is a (height, width) pair and ``output_size`` the length of a convolution's or
pool's output along one axis: ``(size + 2 padding - dilation (kernel - 1) - 1) // stride + 1``.

A compiled loop does not check its indices: a buffer of the wrong shape makes it read
or write outside memory (a crash, or worse, a wrong number). The ops in
``tinyres.ops`` validate user input with messages of their own; these checks guard
the kernels' public functions against any caller, in O(1) (shapes, dtypes) or one
pass over an index array.

>>> import numpy as np
>>> expect("gamma", np.ones(2), shape=(3,))
Traceback (most recent call last):
...
ValueError: kernel argument gamma: expected shape (3,), got (2,)
"""

from __future__ import annotations

from typing import Any

import numpy as np

Pair = tuple[int, int]


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length along one axis: how many kernel placements fit in the padded input.

    The dilated kernel spans ``dilation * (kernel - 1) + 1`` pixels.

    >>> output_size(32, 3, 1, 1, 1), output_size(224, 7, 2, 3, 1), output_size(5, 3, 1, 0, 2)
    (32, 112, 1)
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def expect(
    name: str, a: Any, *, ndim: int | None = None, shape: tuple[int, ...] | None = None,
    dtype: Any = None, floating: bool = False,
) -> None:
    """Raise ValueError/TypeError naming ``name``, what was expected and what came."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"kernel argument {name}: expected a NumPy array, got {type(a).__name__}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"kernel argument {name}: expected {ndim} dimensions, got shape {a.shape}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"kernel argument {name}: expected shape {tuple(shape)}, got {a.shape}")
    if floating and a.dtype not in (np.float32, np.float64):
        raise TypeError(f"kernel argument {name}: expected float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(f"kernel argument {name}: expected dtype {np.dtype(dtype)}, got {a.dtype}")


def expect_positive(name: str, values: Any, minimum: int = 1) -> None:
    """Each of ``values`` (ints, e.g. a stride pair) is an int of at least ``minimum``."""
    if any(not isinstance(v, (int, np.integer)) or v < minimum for v in values):
        raise ValueError(f"kernel argument {name}: expected integers >= {minimum}, got {tuple(values)}")


def expect_indices(name: str, index: np.ndarray, low: int, high: int) -> None:
    """Every element of ``index`` is in [low, high)."""
    if index.size and (index.min() < low or index.max() >= high):
        raise ValueError(
            f"kernel argument {name}: expected values in [{low}, {high}), "
            f"got [{index.min()}, {index.max()}]"
        )
