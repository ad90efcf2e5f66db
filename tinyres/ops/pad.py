"""``pad``: add (or, with negative amounts, remove) elements at the ends of trailing axes.

``pad = (left_last, right_last, left_second_last, right_second_last, ...)`` as in
``torch.nn.functional.pad``. Every mode is one gather per axis: a *source index*
array says, for each output position, which input position it copies, e.g. for an
axis of size 4 padded by 2 on each side::

    constant   -1 -1 0 1 2 3 -1 -1     (-1: the fill value)
    reflect     2  1 0 1 2 3  2  1     (mirror, edge not repeated)
    replicate   0  0 0 1 2 3  3  3     (repeat the edge)
    circular    2  3 0 1 2 3  0  1     (wrap around)

The backward runs the same map in reverse: each output gradient is added to the input
position it came from (``np.add.at``, since reflect and replicate reuse positions).

>>> import tinyres as tr
>>> x = tr.arange(4.0).view(1, 4)
>>> pad(x, (2, 2), mode="reflect").tolist()
[[2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]]
>>> pad(x, (1, -2), value=9.0).tolist()
[[9.0, 0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Function, Tensor

# PyTorch's mode names and NumPy's names for the same padding of an index array.
MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def source_index(size: int, left: int, right: int, mode: str) -> np.ndarray:
    """For each output position along one axis, the input position it copies (-1: fill).

    >>> source_index(4, 2, -1, "replicate").tolist()
    [0, 0, 0, 1, 2]
    """
    positions = np.arange(size)
    grown = np.pad(positions, (max(left, 0), max(right, 0)), mode=MODES[mode],
                   **({"constant_values": -1} if mode == "constant" else {}))
    return grown[max(-left, 0) : len(grown) - max(-right, 0)]


class Pad(Function):
    """z = x gathered axis by axis through ``sources`` (one index array per padded axis)."""

    def forward(self, x: np.ndarray, *, sources: dict[int, np.ndarray], value: float) -> np.ndarray:
        self.shape, self.sources = x.shape, sources
        out = x
        for axis, src in sources.items():
            out = np.take(out, np.maximum(src, 0), axis=axis)
            if (src < 0).any():  # constant mode: overwrite the fill positions
                fill = [slice(None)] * out.ndim
                fill[axis] = src < 0
                out[tuple(fill)] = value
        return out if sources else x.copy()

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        for axis, src in reversed(self.sources.items()):
            shape = list(grad.shape)
            shape[axis] = self.shape[axis]
            back = np.zeros(shape, dtype=grad.dtype)
            kept = src >= 0  # fill positions came from no input
            np.add.at(np.moveaxis(back, axis, 0), src[kept], np.moveaxis(grad, axis, 0)[kept])
            grad = back
        return (grad,)


def pad(input: Tensor, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last ``len(pad) // 2`` axes of ``input`` (negative amounts crop)."""
    if mode not in MODES:
        raise ValueError(f"pad: mode must be one of {sorted(MODES)}, got {mode!r}")
    pad = tuple(pad)
    if len(pad) % 2 or not all(isinstance(p, (int, np.integer)) for p in pad):
        raise ValueError(f"pad: expected an even number of ints (left, right per axis), got {pad}")
    if len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: {len(pad)} values pad {len(pad) // 2} axes, but the input has {input.ndim}")
    if value is not None and mode != "constant":
        raise ValueError(f"pad: value is only used by mode 'constant', got mode {mode!r}")
    sources = {}
    for i in range(len(pad) // 2):
        axis, left, right = input.ndim - 1 - i, int(pad[2 * i]), int(pad[2 * i + 1])
        size = input.shape[axis]
        if size + left + right < 0 or min(left, right) < -size:
            raise ValueError(f"pad: padding ({left}, {right}) leaves a negative size on axis {axis} "
                             f"of size {size}")
        if mode == "reflect" and max(left, right) >= size:
            raise ValueError(f"pad: reflect padding ({left}, {right}) must be smaller than the "
                             f"size {size} of axis {axis}")
        if mode in ("replicate", "circular") and size == 0 and max(left, right) > 0:
            raise ValueError(f"pad: {mode} padding needs a non-empty axis {axis}")
        if mode == "circular" and max(left, right) > size:
            raise ValueError(f"pad: circular padding ({left}, {right}) must be at most the "
                             f"size {size} of axis {axis}")
        sources[axis] = source_index(size, left, right, mode)
    return Pad.apply(input, sources=sources, value=0.0 if value is None else float(value))
