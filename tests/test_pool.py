"""Pooling: the Numba max pool against the NumPy reference, gradients, PyTorch, errors.

Window options are drawn first and the input after, at least as large as the dilated
kernel minus the padding, so overlapping windows (stride < kernel), strides larger
than the kernel, and a kernel equal to the padded input are all in range.
"""

import numpy as np
import pytest
from helpers import arrays, compare_with_torch, float_dtypes, leaf
from hypothesis import assume, given, note
from hypothesis import strategies as st

import tinyres as tr
import tinyres.nn.functional as F
from tinyres import kernels


@st.composite
def pool_cases(draw, dilated=True, max_extra=3):
    """(x, options) for max_pool2d (with dilation) or avg_pool2d (without)."""
    kernel = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilated else (1, 1)
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    padding = tuple(draw(st.integers(0, s // 2)) for s in spans)
    stride = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    hw = [max(1, s - 2 * p) + draw(st.integers(0, max_extra)) for s, p in zip(spans, padding)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *hw)
    x = draw(arrays(shape, dtype=draw(float_dtypes)))
    options = {"kernel_size": kernel, "stride": stride, "padding": padding}
    if dilated:
        options["dilation"] = dilation
    note(f"x {x.shape} {x.dtype} {options}")
    return x, options


def distinct(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Same shape and dtype, values at least 0.1 apart: no near-ties, so no kinks."""
    values = np.random.default_rng(seed).permutation(x.size) * 0.1 - x.size * 0.05
    return values.reshape(x.shape).astype(x.dtype)


def run(tier, pool, x, options, upstream):
    x_leaf = leaf(x)
    with kernels.use_tier(tier):
        y = pool(x_leaf, **options)
        (y * tr.tensor(upstream(y.shape).astype(x.dtype))).sum().backward()
    return y.detach().numpy(), x_leaf.grad.numpy()


# A dilated window on padding only gives -inf in both tiers; assert_allclose then
# computes inf - inf on the way to calling them equal, which NumPy warns about.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@given(data=st.data())
def test_numba_max_pool_matches_reference(data):
    x, options = data.draw(pool_cases())
    x = data.draw(st.sampled_from([x, np.round(x)]))  # rounded: many ties
    upstream = lambda shape: np.random.default_rng(0).standard_normal(shape)  # noqa: E731
    ours = run("numba", F.max_pool2d, x, options, upstream)
    reference = run("reference", F.max_pool2d, x, options, upstream)
    tol = 1e-10 if x.dtype == np.float64 else 1e-5
    for got, want in zip(ours, reference):
        assert got.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
@given(data=st.data())
def test_reference_passes_gradcheck(pool, data):
    x, options = data.draw(pool_cases(dilated=pool is F.max_pool2d, max_extra=2))
    x = distinct(x.astype(np.float64), seed=data.draw(st.integers(0, 100)))
    # A dilated window can fall on padding only; its output is -inf (as in PyTorch),
    # and a difference of infinities is no derivative.
    assume(np.isfinite(pool(leaf(x, False), **options).numpy()).all())
    with kernels.use_tier("reference"):
        assert tr.gradcheck(lambda t: pool(t, **options), [leaf(x)])


@given(
    x=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 7), st.integers(1, 7)).flatmap(
        lambda shape: arrays(shape)
    ),
    out=st.tuples(st.integers(1, 4), st.integers(1, 4)),
)
def test_adaptive_avg_pool_passes_gradcheck(x, out):
    assert tr.gradcheck(lambda t: F.adaptive_avg_pool2d(t, out), [leaf(x)])


def test_a_window_on_padding_only_gives_minus_infinity_and_no_gradient():
    x = tr.randn(1, 2, 1, 3, requires_grad=True)
    y = F.max_pool2d(x, 2, stride=1, padding=1, dilation=2)  # rows -1 and 1: both padding
    assert np.isneginf(y.detach().numpy()).all()
    y.backward(tr.ones(*y.shape))
    assert not x.grad.numpy().any()


def test_ties_send_the_gradient_to_the_first_element():
    x = tr.ones(1, 1, 3, 3, requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    # Each of the four overlapping windows picks its top-left element.
    assert x.grad.numpy()[0, 0].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


@pytest.mark.torch
@pytest.mark.parametrize("tier", ["reference", "numba"])
@pytest.mark.parametrize(
    "expr",
    [
        lambda lib, x: lib.nn.functional.max_pool2d(x, 3, stride=2, padding=1),
        lambda lib, x: lib.nn.functional.max_pool2d(x, (3, 2), stride=1, padding=(1, 1), dilation=(2, 1)),
        lambda lib, x: lib.nn.functional.max_pool2d(x[0], 2),
        lambda lib, x: lib.nn.functional.avg_pool2d(x, 3, stride=2, padding=1),
        lambda lib, x: lib.nn.functional.avg_pool2d(x, (2, 3), stride=(1, 2)),
        lambda lib, x: lib.nn.functional.adaptive_avg_pool2d(x, 1),
        lambda lib, x: lib.nn.functional.adaptive_avg_pool2d(x, (3, 4)),
        lambda lib, x: lib.nn.functional.adaptive_avg_pool2d(x, (None, 2)),
    ],
)
def test_matches_torch(tier, expr):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 6)).astype(np.float32)
    with kernels.use_tier(tier):
        compare_with_torch(expr, x)
        compare_with_torch(expr, np.round(x))  # ties: PyTorch also picks the first


# ---- hand-derived values (no PyTorch needed) -------------------------------------------

NINE = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize("tier", kernels.TIERS)
def test_avg_pool_counts_the_padding_hand_derived(tier):
    # 3x3 windows, stride 1, padding 1: every window divides by 9, zeros included.
    # The corner window holds 1+2+4+5 = 12 -> 12/9 (not 12/4); the centre holds 45 -> 5.
    sums = [[12, 21, 16], [27, 45, 33], [24, 39, 28]]
    x = tr.tensor(NINE, requires_grad=True)
    with kernels.use_tier(tier):
        y = F.avg_pool2d(x, 3, stride=1, padding=1)
        np.testing.assert_allclose(y.detach().numpy()[0, 0], np.array(sums) / 9, rtol=1e-12)
        # Upstream 1 on the corner window only: its four real taps get 1/9 each.
        upstream = np.zeros((1, 1, 3, 3))
        upstream[0, 0, 0, 0] = 1.0
        y.backward(tr.tensor(upstream))
    want = np.zeros((3, 3))
    want[:2, :2] = 1 / 9
    np.testing.assert_allclose(x.grad.numpy()[0, 0], want, rtol=1e-12)


@pytest.mark.parametrize("tier", kernels.TIERS)
def test_adaptive_avg_pool_windows_end_at_the_ceiling_hand_derived(tier):
    # Length 5 into 3: window i is [floor(5i/3), ceil(5(i+1)/3)) = [0, 2), [1, 4), [3, 5),
    # overlapping at elements 1 and 3. Means of 1..5: 1.5, 3, 4.5.
    x = tr.tensor(np.arange(1.0, 6.0).reshape(1, 1, 1, 5), requires_grad=True)
    with kernels.use_tier(tier):
        y = F.adaptive_avg_pool2d(x, (1, 3))
        np.testing.assert_allclose(y.detach().numpy().ravel(), [1.5, 3.0, 4.5], rtol=1e-12)
        # Upstream (1, 2, 4): dx = (1/2, 1/2 + 2/3, 2/3, 2/3 + 4/2, 4/2).
        y.backward(tr.tensor(np.array([1.0, 2.0, 4.0]).reshape(1, 1, 1, 3)))
    np.testing.assert_allclose(x.grad.numpy().ravel(), [1 / 2, 7 / 6, 2 / 3, 8 / 3, 2.0], rtol=1e-12)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: F.max_pool2d(tr.randn(4, 4), 2), ValueError,
         "expected a 3-D or 4-D input (C, H, W) or (N, C, H, W), got shape (4, 4)"),
        (lambda: F.max_pool2d(tr.randn(1, 1, 4, 4), 5), ValueError,
         "kernel spans 5 along the height but the padded input has only 4"),
        (lambda: F.max_pool2d(tr.randn(1, 1, 4, 4), 3, dilation=2), ValueError,
         "kernel spans 5 along the height"),
        (lambda: F.avg_pool2d(tr.randn(1, 1, 4, 4), 2, stride=0), ValueError,
         "stride must be at least 1, got (0, 0)"),
        (lambda: F.max_pool2d(tr.randn(1, 1, 4, 4), 3, padding=2), ValueError,
         "padding 2 along the height must be at most half the (dilated) kernel size 3"),
        (lambda: F.avg_pool2d(tr.randn(1, 1, 4, 4), 2, padding=-1), ValueError,
         "padding must be at least 0"),
        (lambda: F.max_pool2d(tr.ones(1, 1, 4, 4, dtype=tr.int64), 2), TypeError,
         "expected a floating-point input, got dtype int64"),
        (lambda: F.max_pool2d(tr.randn(1, 1, 4, 4), (2, 2, 2)), TypeError,
         "kernel_size must be an int or a pair of ints"),
        (lambda: F.adaptive_avg_pool2d(tr.randn(1, 1, 4, 4), 0), ValueError,
         "output_size must be at least 1"),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
