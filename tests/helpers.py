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

import tinyres
import tinyres.data

# The strategies are public (tinyres.testing), shared with the op table and the exercise grader.
from tinyres.testing.strategies import (  # noqa: F401  (re-exported for the tests)
    arrays,
    away_from,
    broadcastable_pairs,
    float_dtypes,
    shapes,
    small_dims,
)


def leaf(a: np.ndarray, requires_grad: bool = True) -> tinyres.Tensor:
    """A tensor on ``a`` itself, strides included (``tr.tensor`` would copy it to C order)."""
    return tinyres.Tensor(a, requires_grad=requires_grad)


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


def compare_with_torch(expr, *data, rtol=1e-4, atol=1e-5, seed=0, grad=True):
    """Run ``expr`` on tinyres and on PyTorch; assert outputs and input gradients agree.

    Float arrays become inputs that require grad; integer arrays (class labels) do
    not. Skips the calling test when torch is not installed.
    """
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    needs = [grad and a.dtype.kind == "f" for a in data]
    tr_in = [leaf(a, requires_grad=n) for a, n in zip(data, needs)]
    th_in = [torch.tensor(np.array(a), requires_grad=n) for a, n in zip(data, needs)]
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
