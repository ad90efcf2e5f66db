"""Memory layout in one place: what "channels last" means, how a tier asks for it, how a gradient keeps it.

Every tensor is indexed (N, C, H, W) (or (N, C, S)), as in PyTorch; the *memory* behind
it may be ordered two ways:

- **C order** (NCHW): ``a.flags.c_contiguous``; one channel's pixels are contiguous;
- **channels last** (NHWC): the array is a ``transpose(0, 3, 1, 2)`` view of C-ordered
  (N, H, W, C) memory; one pixel's channels are contiguous.

The Numba convolution works channels last (a receptive field is kH*kW runs of C
numbers, and the output of its matrix product *is* NHWC memory), so its output is
channels last, and the kernels after it (batch norm, ReLU's backward, the next
convolution) read that layout as it is instead of copying it: a layer asks for a
layout with ``to_channels_last`` (no copy when the array already is), tests it with
``is_channels_last``, and returns its result in the same layout. A leaf's gradient
keeps the layout of the incoming gradient (``tinyres/engine.py`` copies with
``order="K"``), so no layer in between pays for a transpose.

>>> import numpy as np
>>> x = np.zeros((2, 3, 4, 5), dtype=np.float32)
>>> is_channels_last(x), is_channels_last(to_channels_last(x).transpose(0, 3, 1, 2))
(False, True)
>>> nhwc = to_channels_last(x)                 # one copy, (2, 4, 5, 3)
>>> np.shares_memory(to_channels_last(from_channels_last(nhwc)), nhwc)   # none the second time
True
"""

from __future__ import annotations

import numpy as np

from tinyres.kernels import buffers


def _last(ndim: int) -> tuple[int, ...]:
    """The axis order that moves the channels (axis 1) last: (0, 2, ..., ndim-1, 1)."""
    return (0, *range(2, ndim), 1)


def is_channels_last(a: np.ndarray) -> bool:
    """Whether (N, C, ...) ``a`` views C-ordered (N, ..., C) memory, and is not C-ordered itself.

    (An array with one channel or one pixel is both; it counts as C order.)
    """
    return a.ndim >= 3 and not a.flags.c_contiguous and a.transpose(_last(a.ndim)).flags.c_contiguous


def to_channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) ``a`` as a C-ordered (N, ..., C) array; no copy if its memory already is."""
    return buffers.ascontiguousarray(a.transpose(_last(a.ndim)))


def from_channels_last(a: np.ndarray) -> np.ndarray:
    """A C-ordered (N, ..., C) array viewed as (N, C, ...) (no copy): the channels-last layout."""
    return a.transpose(0, a.ndim - 1, *range(1, a.ndim - 1))
