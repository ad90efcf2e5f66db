"""Hypothesis strategies that draw tinyres Tensors: shapes, layouts, broadcastable pairs, conv arguments.

The test suite, the op table's property tests and the exercise grader (``tinyres check``)
draw from these, and so can your own tests: a learner's code meets the cases the
library's own kernels are tested on. Needs hypothesis (the ``test`` and ``lessons``
extras); ``tinyres.testing`` itself does not, so ``import tinyres`` never imports it.

A layout is how the values sit in memory: ``"c"`` (C order), ``"transposed"`` (the
transpose of a C-order array: column-major for 2-d) or ``"strided"`` (every other
element of a larger array). Kernels that assume C order fail on the other two.

>>> from hypothesis import given
>>> from tinyres.testing.strategies import tensors
>>> @given(x=tensors(shape=(2, 3), layout="transposed"))
... def test_layout(x):
...     assert x.shape == (2, 3) and not x.detach().numpy().flags.c_contiguous
>>> test_layout()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyres.engine import Tensor

small_dims = st.integers(min_value=1, max_value=4)
float_dtypes = st.sampled_from([np.float32, np.float64])
LAYOUTS = ("c", "transposed", "strided")


def shapes(min_dims: int = 1, max_dims: int = 3, max_side: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes with ``min_dims`` to ``max_dims`` axes of 1 to ``max_side`` elements each."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


@st.composite
def broadcastable_pairs(draw: Any, max_dims: int = 3) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast together, e.g. (2, 1, 3) and (4, 1)."""
    shape = draw(shapes(1, max_dims))
    other = list(shape[draw(st.integers(0, len(shape) - 1)) :])
    other = [1 if draw(st.booleans()) else n for n in other]
    pair = (shape, tuple(other))
    return pair if draw(st.booleans()) else pair[::-1]


def make_array(shape, layout: str, seed: int, dtype=np.float64, low=-2.0, high=2.0) -> np.ndarray:
    """A uniform array of ``shape`` in C order, transposed, or strided (a view of a larger one).

    Seeded rather than drawn element by element: a failure reproduces from its seed,
    and hypothesis shrinks the seed and the shape instead of hundreds of floats.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
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
def arrays(draw: Any, shape, dtype=np.float64, low=-2.0, high=2.0, layout=None) -> np.ndarray:
    """A finite float array of ``shape`` in a drawn (or the given) memory layout."""
    seed = draw(st.integers(0, 2**32 - 1))
    layout = layout or draw(st.sampled_from(LAYOUTS))
    return make_array(shape, layout, seed, dtype, low, high)


def away_from(x: np.ndarray, kink: float = 0.0, margin: float = 0.05) -> np.ndarray:
    """Push values at least ``margin`` away from ``kink`` (keeps ReLU differentiable)."""
    return np.where(x >= kink, np.maximum(x, kink + margin), np.minimum(x, kink - margin)).astype(
        x.dtype
    )


def _strategy(value: Any) -> st.SearchStrategy[Any]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


@st.composite
def tensors(
    draw: Any,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    dtype: Any = np.float64,
    layout: str | st.SearchStrategy[str] | None = None,
    elements: tuple[float, float] = (-2.0, 2.0),
    kinks: Sequence[float] = (0.0,),
    margin: float = 0.05,
    requires_grad: bool = True,
) -> Tensor:
    """A tinyres Tensor leaf drawn for a property test.

    - ``shape``: a tuple or a strategy (default: ``shapes()``, 1 to 3 axes of 1 to 4).
    - ``dtype``: float32, float64 (default: gradient checks want it) or a strategy of them.
    - ``layout``: ``"c"``, ``"transposed"``, ``"strided"`` or a strategy (default: any of
      the three), so a kernel that assumes C order is caught. The Tensor keeps the
      drawn strides: it is made on the array itself, not on a C-order copy.
    - ``elements``: the (low, high) range of the uniform values.
    - ``kinks``: values kept at least ``margin`` away, where the function is not
      differentiable and central differences disagree with any backward by design
      (0 for ReLU and ``abs``; pass ``()`` for none).
    - ``requires_grad``: whether the leaf requires grad (only float tensors can).
    """
    shape = draw(_strategy(shape) if shape is not None else shapes())
    dtype = np.dtype(draw(_strategy(dtype)))
    if dtype.kind != "f":
        raise ValueError(f"tensors: dtype must be float32 or float64, got {dtype}")
    low, high = elements
    if not low < high:
        raise ValueError(f"tensors: elements must be (low, high) with low < high, got {elements}")
    layout = draw(_strategy(layout) if layout is not None else st.sampled_from(LAYOUTS))
    x = make_array(shape, layout, draw(st.integers(0, 2**32 - 1)), dtype, low, high)
    for kink in kinks:
        x[...] = away_from(x, kink, margin)  # in place: the drawn strides stay
    return Tensor(x, requires_grad=requires_grad)


@st.composite
def conv2d_args(draw: Any, dtype: Any = np.float64, max_side: int = 6) -> dict[str, Any]:
    """Arguments of ``F.conv2d``: ``input``, ``weight``, ``bias`` (or None), ``stride``,
    ``padding``, ``dilation`` and ``groups``, drawn so the output has at least one pixel.

    >>> from hypothesis import given
    >>> import tinyres.nn.functional as F
    >>> @given(args=conv2d_args())
    ... def test_conv_runs(args):
    ...     assert F.conv2d(**args).ndim == 4
    >>> test_conv_runs()
    """
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    # Smallest side with one output pixel: the dilated kernel must fit in the padded input.
    low_h = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    low_w = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(low_h, max(low_h, max_side))), draw(st.integers(low_w, max(low_w, max_side)))
    return {
        "input": draw(tensors(shape=(n, c_in, h, w), dtype=dtype, kinks=())),
        "weight": draw(tensors(shape=(c_out, c_in // groups, kh, kw), dtype=dtype, kinks=())),
        "bias": draw(st.none() | tensors(shape=(c_out,), dtype=dtype, kinks=())),
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
    }
