"""Hypothesis strategies for arrays: shapes, broadcastable pairs and non-contiguous layouts.

The test suite and the exercise grader (``tinyres check``) draw from the same
strategies, so a learner's code meets the cases the library's own kernels are tested on.
Needs hypothesis (in the ``test`` and ``lessons`` extras).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

small_dims = st.integers(min_value=1, max_value=4)
float_dtypes = st.sampled_from([np.float32, np.float64])
LAYOUTS = ("c", "transposed", "strided")


def shapes(min_dims: int = 1, max_dims: int = 3, max_side: int = 4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


@st.composite
def broadcastable_pairs(draw, max_dims: int = 3):
    """Two shapes that broadcast together, e.g. (2, 1, 3) and (4, 1)."""
    shape = draw(shapes(1, max_dims))
    other = list(shape[draw(st.integers(0, len(shape) - 1)) :])
    other = [1 if draw(st.booleans()) else n for n in other]
    pair = (shape, tuple(other))
    return pair if draw(st.booleans()) else pair[::-1]


def make_array(shape, layout: str, seed: int, dtype=np.float64, low=-2.0, high=2.0) -> np.ndarray:
    """A uniform array of ``shape`` in C order, transposed, or strided (a view of a larger one).

    The non-contiguous layouts catch kernels that assume C order on their input.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        base = rng.uniform(low, high, shape[::-1]).astype(dtype)
        return base.transpose(tuple(reversed(range(len(shape)))))
    if layout == "strided" and len(shape) >= 1:
        big = rng.uniform(low, high, shape[:-1] + (2 * shape[-1],)).astype(dtype)
        return big[..., ::2]
    return rng.uniform(low, high, shape).astype(dtype)


@st.composite
def arrays(draw, shape, dtype=np.float64, low=-2.0, high=2.0, layout=None):
    """A finite float array of ``shape`` in a drawn (or the given) memory layout."""
    seed = draw(st.integers(0, 2**32 - 1))
    layout = layout or draw(st.sampled_from(LAYOUTS))
    return make_array(shape, layout, seed, dtype, low, high)


def away_from(x: np.ndarray, kink: float = 0.0, margin: float = 0.05) -> np.ndarray:
    """Push values at least ``margin`` away from ``kink`` (keeps ReLU differentiable)."""
    return np.where(x >= kink, np.maximum(x, kink + margin), np.minimum(x, kink - margin)).astype(
        x.dtype
    )
