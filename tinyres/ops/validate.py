"""Input checks shared by the layer ops, run before any kernel touches the data.

A kernel indexes arrays without bounds checks (Numba does not check them), so every
shape, dtype and option is checked here first, and each message names what was
expected and what came.

>>> import numpy as np
>>> as_pair(3, "kernel_size", "max_pool2d")
(3, 3)
>>> as_pair(1.5, "stride", "max_pool2d")
Traceback (most recent call last):
    ...
tinyres.ops.validate.PairError: max_pool2d: stride must be an int or a pair of ints, got 1.5
>>> issubclass(PairError, TypeError) and issubclass(PairError, ValueError)
True
>>> check_float("relu", np.zeros(2, dtype=np.int64))
Traceback (most recent call last):
    ...
TypeError: relu: expected a floating-point input, got dtype int64
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Tensor


class PairError(TypeError, ValueError):
    """Not an int or a pair of ints: a TypeError for a float, a ValueError for three numbers;
    callers may catch either."""


def as_pair(value: Any, name: str, op: str, minimum: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints, as PyTorch accepts for kernel size, stride, ...

    With ``minimum``, each of the two must be at least that (stride >= 1, padding >= 0).
    The one parser for every layer and function (``nn.Conv2d``, ``F.conv2d``, pooling).
    """
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if not (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair)
    ):
        raise PairError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be at least {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_float(op: str, *arrays: np.ndarray | None) -> None:
    """Refuse integer inputs and a mix of float32 and float64 (no silent upcasts)."""
    dtypes = []
    for a in arrays:
        if a is None:
            continue
        if a.dtype.kind != "f":
            raise TypeError(f"{op}: expected a floating-point input, got dtype {a.dtype}")
        dtypes.append(a.dtype)
    if len(set(dtypes)) > 1:
        names = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{op}: inputs must share one float dtype, got {names}")


def check_ndim(op: str, x: np.ndarray, allowed: tuple[int, ...], layout: str) -> None:
    """Refuse an input whose number of dimensions is not in ``allowed``."""
    if x.ndim not in allowed:
        wanted = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(f"{op}: expected a {wanted} input {layout}, got shape {tuple(x.shape)}")


# A bound checked before anything is allocated: more than this per plane is a typo in the
# padding, not an image (NumPy would fail with "array is too big", or allocate for minutes).
MAX_PADDED_PLANE = 2**31


def check_window_fits(op: str, hw: tuple[int, int], kernel: tuple[int, int], padding: tuple[int, int],
                      dilation: tuple[int, int]) -> None:
    """The input is not empty, the padding is not absurd, and the (dilated) kernel fits in the
    padded input along height and width (PyTorch refuses an empty height or width too)."""
    if 0 in tuple(hw):
        raise ValueError(f"{op}: expected an input with a non-empty height and width, got {tuple(hw)}")
    padded = (hw[0] + 2 * padding[0]) * (hw[1] + 2 * padding[1])
    if padded > MAX_PADDED_PLANE:
        raise ValueError(f"{op}: padding {tuple(padding)} makes each padded plane {padded:,} elements; "
                         f"expected at most {MAX_PADDED_PLANE:,} (2**31)")
    for axis, size, k, p, d in zip(("height", "width"), hw, kernel, padding, dilation):
        span = d * (k - 1) + 1
        if span > size + 2 * p:
            raise ValueError(
                f"{op}: kernel {axis} {span} (size {k}, dilation {d}) is larger than the "
                f"padded input {axis} {size + 2 * p} (size {size}, padding {p})"
            )


def check_tensor(op: str, **arguments: Any) -> None:
    """Refuse a non-Tensor (a NumPy array, a list) where the op takes a Tensor, as PyTorch does.

    Without this the op would fail later with an AttributeError about ``_data``.
    """
    for name, value in arguments.items():
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"{op}(): argument '{name}' must be a Tensor, not {type(value).__name__}; "
                            "wrap it with tinyres.tensor(...)")
