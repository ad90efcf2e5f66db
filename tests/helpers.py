"""Test helpers: hypothesis strategies for arrays, and the one PyTorch cross-check.

``compare_with_torch(expr, *arrays)`` runs ``expr(lib, *tensors)`` once with
``lib = tinyres`` and once with ``lib = torch`` on the same data, then compares the
outputs and the gradient of every input (under a random upstream gradient). Because
tinyres mirrors PyTorch's names, one expression serves both:

    compare_with_torch(lambda lib, x, w: lib.nn.functional.conv2d(x, w, padding=1), x, w)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyres
import tinyres.data

# ---- strategies ---------------------------------------------------------------------

small_dims = st.integers(min_value=1, max_value=4)


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


@st.composite
def arrays(draw, shape, dtype=np.float64, low=-2.0, high=2.0, layout=None):
    """A finite float array of ``shape`` in C order, transposed, or strided.

    The non-contiguous layouts are views of a larger array, so kernels that assume
    C order on their input get caught. Wrap them with ``leaf``, not ``tr.tensor``:
    ``tr.tensor`` copies, and its copy of a strided view is plain C order again.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    layout = layout or draw(st.sampled_from(["c", "transposed", "strided"]))
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        base = rng.uniform(low, high, shape[::-1]).astype(dtype)
        return base.transpose(tuple(reversed(range(len(shape)))))
    if layout == "strided" and len(shape) >= 1:
        big = rng.uniform(low, high, shape[:-1] + (2 * shape[-1],)).astype(dtype)
        return big[..., ::2]
    return rng.uniform(low, high, shape).astype(dtype)


float_dtypes = st.sampled_from([np.float32, np.float64])


def leaf(a: np.ndarray, requires_grad: bool = True) -> tinyres.Tensor:
    """A tensor on ``a`` itself, strides included (``tr.tensor`` would copy it to C order)."""
    return tinyres.Tensor(a, requires_grad=requires_grad)


def away_from(x: np.ndarray, kink: float = 0.0, margin: float = 0.05) -> np.ndarray:
    """Push values at least ``margin`` away from ``kink`` (keeps ReLU differentiable)."""
    return np.where(x >= kink, np.maximum(x, kink + margin), np.minimum(x, kink - margin)).astype(
        x.dtype
    )


# ---- data ----------------------------------------------------------------------------


def toy_data(n: int, seed: int, size: int = 8) -> tinyres.data.ArrayDataset:
    """Images whose label is the quadrant holding the brightest blob: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    half = size // 2
    for i, c in enumerate(labels):
        y, x = divmod(int(c), 2)
        images[i, 0, y * half : (y + 1) * half, x * half : (x + 1) * half] += 1.0
    return tinyres.data.ArrayDataset(images, labels)


# ---- the PyTorch cross-check ----------------------------------------------------------


def compare_with_torch(expr, *arrays, rtol=1e-4, atol=1e-5, seed=0, grad=True):
    """Run ``expr`` on tinyres and on PyTorch; assert outputs and input gradients agree.

    Float arrays become inputs that require grad; integer arrays (class labels) do
    not. Skips the calling test when torch is not installed.
    """
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    needs = [grad and a.dtype.kind == "f" for a in arrays]
    tr_in = [leaf(a, requires_grad=n) for a, n in zip(arrays, needs)]
    th_in = [torch.tensor(np.array(a), requires_grad=n) for a, n in zip(arrays, needs)]
    tr_out = expr(tinyres, *tr_in)
    th_out = expr(torch, *th_in)
    np.testing.assert_allclose(
        tr_out.detach().numpy(), th_out.detach().numpy(), rtol=rtol, atol=atol,
        err_msg="forward differs from PyTorch",
    )
    if not any(needs):
        return
    upstream = rng.standard_normal(tr_out.shape).astype(tr_out.dtype)
    (tr_out * tinyres.tensor(upstream)).sum().backward()
    (th_out * torch.tensor(upstream)).sum().backward()
    for i, (a, b) in enumerate(zip(tr_in, th_in)):
        if b.grad is None:
            continue
        assert a.grad is not None, f"tinyres gave no gradient for input {i}"
        np.testing.assert_allclose(
            a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol,
            err_msg=f"gradient of input {i} differs from PyTorch",
        )
