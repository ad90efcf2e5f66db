"""conv2d: every kernel tier against the loop reference, the reference against finite
differences, input validation, and PyTorch.

The hypothesis cases draw the kernel first and then an input at least as large as the
dilated kernel minus the padding, so "kernel equals the padded input" is the
smallest example hypothesis shrinks towards; 1x1 kernels and strides larger than
the kernel are in the drawn ranges.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import arrays, compare_with_torch, float_dtypes, leaf
from hypothesis import given, note, settings
from hypothesis import strategies as st

import tinyres as tr
from tinyres import kernels
from tinyres.kernels import columns_numba, conv_reference, im2col_numba
from tinyres.nn import functional as F

FAST_TIERS = ["numpy", "numba"]


@st.composite
def conv_cases(draw, max_batch=3, max_channels=4, max_extra=4):
    """(x shape, weight shape, stride, padding, dilation) that conv2d must accept."""
    N = draw(st.integers(1, max_batch))
    C_in, C_out = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = []
    for k, p, d in zip(kernel, padding, dilation):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the padded input just holds the kernel
        size.append(draw(st.integers(smallest, smallest + max_extra)))
    return (N, C_in, *size), (C_out, C_in, *kernel), stride, padding, dilation


def _describe(case, dtype, bias) -> str:
    x_shape, w_shape, stride, padding, dilation = case
    return (f"conv2d(x{x_shape}, w{w_shape}, bias={bias}, stride={stride}, padding={padding}, "
            f"dilation={dilation}), {np.dtype(dtype).name}")


def _run(tier, x, w, b, options, upstream):
    """Forward and all gradients of conv2d under one tier, as float64 arrays."""
    inputs = [leaf(a) if a is not None else None for a in (x, w, b)]
    with kernels.use_tier(tier):
        y = F.conv2d(*inputs, **options)
        y.backward(upstream.astype(y.dtype))
    assert y.dtype == x.dtype
    grads = [t.grad.numpy() for t in inputs if t is not None]
    assert all(g.dtype == x.dtype for g in grads), "gradients must keep the input's dtype"
    return [y.detach().numpy(), *grads]


@given(case=conv_cases(), dtype=float_dtypes, bias=st.booleans(), data=st.data())
def test_fast_tiers_agree_with_the_loop_reference(case, dtype, bias, data):
    x_shape, w_shape, stride, padding, dilation = case
    note(_describe(case, dtype, bias))
    x = data.draw(arrays(x_shape, dtype), label="x")  # C order, transposed or strided views
    w = data.draw(arrays(w_shape, dtype), label="w")
    b = data.draw(arrays((w_shape[0],), dtype), label="b") if bias else None
    options = dict(stride=stride, padding=padding, dilation=dilation)
    out_shape = conv_reference.conv2d_forward(
        np.zeros(x_shape), np.zeros(w_shape), None, stride, padding, dilation).shape
    upstream = np.random.default_rng(0).standard_normal(out_shape)
    # The oracle in float64, whatever the dtype under test.
    as64 = [None if a is None else a.astype(np.float64) for a in (x, w, b)]
    expected = _run("reference", *as64, options, upstream)
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    names = ["output", "dx", "dw", "db"]
    for tier in FAST_TIERS:
        for name, got, want in zip(names, _run(tier, x, w, b, options, upstream), expected):
            np.testing.assert_allclose(got, want, **tolerance, err_msg=f"{tier} tier: {name}")


@contextlib.contextmanager
def block_rows(rows: int):
    """Make the Numba tier cut the batch into blocks of ``rows`` column rows (at least 2 samples)."""
    saved, im2col_numba.BLOCK_ROWS = im2col_numba.BLOCK_ROWS, rows
    try:
        yield
    finally:
        im2col_numba.BLOCK_ROWS = saved


@settings(max_examples=40)
@given(case=conv_cases(max_batch=7), dtype=float_dtypes, rows=st.integers(1, 40), data=st.data())
def test_numba_tier_in_blocks_of_samples_agrees_with_the_reference(case, dtype, rows, data):
    """Several blocks, a short last one: the same output and gradients as one block."""
    x_shape, w_shape, stride, padding, dilation = case
    note(_describe(case, dtype, True))
    x, w, b = (data.draw(arrays(shape, dtype)) for shape in (x_shape, w_shape, w_shape[:1]))
    options = dict(stride=stride, padding=padding, dilation=dilation)
    out_shape = conv_reference.conv2d_forward(
        np.zeros(x_shape), np.zeros(w_shape), None, stride, padding, dilation).shape
    upstream = np.random.default_rng(0).standard_normal(out_shape)
    expected = _run("reference", *(a.astype(np.float64) for a in (x, w, b)), options, upstream)
    with block_rows(rows):
        got = _run("numba", x, w, b, options, upstream)
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    for name, g, e in zip(["output", "dx", "dw", "db"], got, expected):
        np.testing.assert_allclose(g, e, **tolerance, err_msg=name)


@given(case=conv_cases(max_channels=2 * columns_numba.FEW_CHANNELS), dtype=float_dtypes, data=st.data())
def test_both_numba_im2col_kernels_build_the_same_columns(case, dtype, data):
    """The whole-row kernel for few channels and the general one write every entry alike.

    The conv2d tests above reach the general kernel with small inputs only through
    dilation; here the two meet on the same undilated cases, from 1 to 32 channels.
    """
    x_shape, (_, _, kH, kW), (sH, sW), (pH, pW), _ = case
    note(f"x{x_shape}, kernel ({kH}, {kW}), stride ({sH}, {sW}), padding ({pH}, {pW}), {dtype.__name__}")
    x = np.ascontiguousarray(data.draw(arrays(x_shape, dtype), label="x").transpose(0, 2, 3, 1))
    N, H, W, C = x.shape
    Ho, Wo = conv_reference.output_size(H, kH, sH, pH, 1), conv_reference.output_size(W, kW, sW, pW, 1)
    general, rows = (np.full((N * Ho * Wo, kH * kW * C), np.nan, dtype=dtype) for _ in range(2))
    columns_numba.im2col_nhwc(x, kH, kW, sH, sW, pH, pW, 1, 1, Ho, Wo, general)
    columns_numba.im2col_nhwc_rows(x, kH, kW, sH, sW, pH, pW, Ho, Wo, rows)
    assert not np.isnan(general).any() and not np.isnan(rows).any(), "an entry was never written"
    np.testing.assert_array_equal(rows, general)


@settings(max_examples=10)
@given(case=conv_cases(max_batch=5, max_channels=2, max_extra=2), seed=st.integers(0, 99))
def test_numba_tier_in_blocks_passes_gradcheck(case, seed):
    x_shape, w_shape, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    inputs = [tr.tensor(rng.standard_normal(s), requires_grad=True) for s in (x_shape, w_shape)]
    with block_rows(1):
        assert tr.gradcheck(
            lambda *t: F.conv2d(*t, stride=stride, padding=padding, dilation=dilation), inputs, seed=seed
        )


@settings(max_examples=10)
@given(case=conv_cases(max_batch=2, max_channels=2, max_extra=2), bias=st.booleans(), seed=st.integers(0, 99))
def test_reference_passes_gradcheck(case, bias, seed):
    x_shape, w_shape, stride, padding, dilation = case
    note(_describe(case, np.float64, bias))
    rng = np.random.default_rng(seed)
    x = tr.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = tr.tensor(rng.standard_normal(w_shape), requires_grad=True)
    inputs = (x, w, tr.tensor(rng.standard_normal(w_shape[0]), requires_grad=True)) if bias else (x, w)
    with kernels.use_tier("reference"):
        assert tr.gradcheck(
            lambda *t: F.conv2d(*t, stride=stride, padding=padding, dilation=dilation), inputs, seed=seed
        )


@pytest.mark.parametrize("tier", FAST_TIERS)
def test_stacked_convolutions_match_across_tiers(tier):
    """Two layers, so one layer's backward runs after the next one's forward (reused buffers)."""
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((2, 3, 9, 9))
    w1, w2 = rng.standard_normal((5, 3, 3, 3)), rng.standard_normal((4, 5, 1, 1))
    upstream = rng.standard_normal((2, 4, 5, 5))

    def grads(tier):
        x, a, b = (tr.tensor(v, requires_grad=True) for v in (x0, w1, w2))
        with kernels.use_tier(tier):
            y = F.conv2d(F.conv2d(x, a, padding=1, stride=2), b)
            y.backward(upstream)
        return [y.detach().numpy(), x.grad.numpy(), a.grad.numpy(), b.grad.numpy()]

    for got, want in zip(grads(tier), grads("reference")):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@settings(max_examples=40)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 5),
                    st.integers(1, 5)),
    dtype=float_dtypes, bias=st.booleans(), channels_last=st.booleans(), upstream_last=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_pointwise_layers_agree_with_the_reference_in_either_layout(
    shape, dtype, bias, channels_last, upstream_last, seed
):
    """A 1x1 layer reads an NCHW input in place and a channels-last one as such; both are right.

    The drawn cases above rarely hit a 1x1 kernel with stride 1 and no padding, the
    only shape that takes the per-sample path; here every case does.
    """
    N, C_in, C_out, H, W = shape
    note(f"x({N}, {C_in}, {H}, {W}), w({C_out}, {C_in}, 1, 1), {dtype.__name__}, bias={bias}, "
         f"channels_last={channels_last}, upstream channels_last={upstream_last}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C_in, H, W)).astype(dtype)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((C_out, C_in, 1, 1)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype) if bias else None
    upstream = rng.standard_normal((N, C_out, H, W))
    if upstream_last:
        upstream = np.ascontiguousarray(upstream.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    options = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1))
    expected = _run("reference", *(None if a is None else a.astype(np.float64) for a in (x, w, b)),
                    options, upstream)
    got = _run("numba", x, w, b, options, upstream)
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    for name, g, e in zip(["output", "dx", "dw", "db"], got, expected):
        np.testing.assert_allclose(g, e, **tolerance, err_msg=name)
    assert got[0].transpose(0, 2, 3, 1).flags.c_contiguous, "a convolution's output is channels last"


def test_pointwise_layer_on_an_nchw_input_passes_gradcheck():
    rng = np.random.default_rng(3)
    x = tr.tensor(rng.standard_normal((2, 3, 4, 5)), requires_grad=True)
    w = tr.tensor(rng.standard_normal((4, 3, 1, 1)), requires_grad=True)
    b = tr.tensor(rng.standard_normal(4), requires_grad=True)
    assert x.detach().numpy().flags.c_contiguous  # the per-sample path, not a channels-last copy
    assert tr.gradcheck(lambda *t: F.conv2d(*t), [x, w, b], seed=3)


def windows(x: np.ndarray, kernel: tuple[int, int], stride: int, padding: int) -> np.ndarray:
    """Every kernel window of the zero-padded ``x``: shape (N, C, H_out, W_out, kH, kW).

    An oracle independent of the kernels: y = sum over c, i, j of windows * w, and
    dL/dw = sum over n and output positions of upstream * windows.
    """
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(2, 3))[:, :, ::stride, ::stride]


@pytest.mark.parametrize("tier", kernels.TIERS)
def test_input_without_grad_gets_none_and_weight_still_learns(tier):
    rng = np.random.default_rng(0)
    x = tr.tensor(rng.standard_normal((2, 3, 6, 6)))
    w = tr.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    upstream = rng.standard_normal((2, 4, 5, 5))
    with kernels.use_tier(tier):
        y = F.conv2d(x, w, stride=2, padding=3)
        y.backward(upstream)
    assert x.grad is None
    patches = windows(x.numpy(), (3, 3), stride=2, padding=3)
    want = np.einsum("nchwij,ocij->nohw", patches, w.detach().numpy())
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w.grad.numpy(), np.einsum("nohw,nchwij->ocij", upstream, patches),
                               rtol=1e-10, atol=1e-10)


def test_unbatched_input_is_one_image_of_a_batch():
    x = tr.randn(3, 7, 5, dtype=tr.float64, requires_grad=True)
    w = tr.randn(2, 3, 3, 2, dtype=tr.float64)
    y = F.conv2d(x, w, padding=(1, 0), stride=(2, 1))
    batched = F.conv2d(tr.tensor(x.detach().numpy()[None]), w, padding=(1, 0), stride=(2, 1))
    assert y.shape == (2, 4, 4)
    np.testing.assert_allclose(y.detach().numpy(), batched.numpy()[0], rtol=1e-12)
    upstream = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(upstream)
    x_batched = tr.tensor(x.detach().numpy()[None], requires_grad=True)
    F.conv2d(x_batched, w, padding=(1, 0), stride=(2, 1)).backward(upstream[None])
    np.testing.assert_allclose(x.grad.numpy(), x_batched.grad.numpy()[0], rtol=1e-12)


# ---- validation: every bad input is refused before a kernel runs, with a clear message -----

X = np.zeros((2, 3, 5, 5), dtype=np.float32)
W = np.zeros((4, 3, 3, 3), dtype=np.float32)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((np.zeros((3, 5, 5, 1, 1), np.float32), W), {}, ValueError,
         r"4-D .* or 3-D .* got shape \(3, 5, 5, 1, 1\)"),
        ((np.zeros((5, 5), np.float32), W), {}, ValueError, r"got shape \(5, 5\)"),
        ((X, np.zeros((4, 3, 3), np.float32)), {}, ValueError, r"4-D weight .* got shape \(4, 3, 3\)"),
        ((X, np.zeros((4, 2, 3, 3), np.float32)), {}, ValueError, "input has 3 channels, weight expects 2"),
        ((X, np.zeros((4, 3, 7, 3), np.float32)), {}, ValueError,
         "kernel height 7 .* larger than the padded input height 5"),
        ((X, W), {"dilation": (1, 3)}, ValueError, "kernel width 7 .* padded input width 5"),
        ((X, W), {"stride": 0}, ValueError, "stride must be at least 1, got 0"),
        ((X, W), {"stride": (1, -2)}, ValueError, r"stride must be at least 1, got \(1, -2\)"),
        ((X, W), {"dilation": 0}, ValueError, "dilation must be at least 1"),
        ((X, W), {"padding": -1}, ValueError, "padding must be at least 0, got -1"),
        ((X, W), {"padding": (1, 2, 3)}, TypeError, "padding must be an int or a pair of ints"),
        ((X, W), {"stride": 1.5}, TypeError, "stride must be an int or a pair of ints, got 1.5"),
        ((X, W.astype(np.float64)), {}, TypeError, "input is float32 but weight is float64"),
        ((X.astype(np.int64), W), {}, TypeError, "input must be a floating-point tensor, got dtype int64"),
        ((X, W.astype(np.int32)), {}, TypeError, "weight must be a floating-point tensor, got dtype int32"),
        ((X, W, np.zeros(3, np.float32)), {}, ValueError, r"bias must have shape \(4,\) .* got \(3,\)"),
        ((X, W, np.zeros((4, 1), np.float32)), {}, ValueError, r"bias must have shape \(4,\)"),
        ((X, W, np.zeros(4, np.float64)), {}, TypeError, "input is float32 but bias is float64"),
        ((X, np.zeros((0, 3, 3, 3), np.float32)), {}, ValueError, "weight shape .* empty dimension"),
    ],
)
def test_bad_arguments_are_refused_with_expected_and_actual(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        F.conv2d(*(tr.tensor(a) for a in args), **kwargs)


BREAKS = {
    # name: (how a valid case is broken, the error every tier must raise)
    "stride": (lambda c: c | {"stride": 0}, "stride must be at least 1"),
    "padding": (lambda c: c | {"padding": -1}, "padding must be at least 0"),
    "dilation": (lambda c: c | {"dilation": 0}, "dilation must be at least 1"),
    "channels": (lambda c: c | {"w": (c["w"][0], c["w"][1] + 1, *c["w"][2:])}, "channels, weight expects"),
    "kernel": (lambda c: c | {"w": (*c["w"][:2], c["x"][-2] + 2 * c["padding"] + 1, c["w"][3])},
               "larger than the padded input"),
    # 5-D from either (N, C, H, W) or (C, H, W): one leading axis would make the latter valid.
    "input ndim": (lambda c: c | {"x": (1,) * (5 - len(c["x"])) + tuple(c["x"])}, "got shape"),
    "weight ndim": (lambda c: c | {"w": c["w"][1:]}, "4-D weight"),
    "empty": (lambda c: c | {"w": (0, *c["w"][1:])}, "empty dimension"),
}


@st.composite
def any_conv_arguments(draw):
    """A valid conv2d call (half the draws) or one broken in one named way; random data."""
    N = draw(st.integers(1, 3))
    C_in, C_out, k, padding = (draw(st.integers(1, 3)) for _ in range(4))
    padding -= 1
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    span = dilation * (k - 1) + 1
    H, W = (max(1, span - 2 * padding) + draw(st.integers(0, 3)) for _ in range(2))
    case = {"x": (N, C_in, H, W), "w": (C_out, C_in, k, k), "stride": stride, "padding": padding,
            "dilation": dilation}
    if draw(st.booleans()):
        case["x"] = case["x"][1:]  # unbatched (C, H, W)
    broken = draw(st.sampled_from(sorted(BREAKS))) if draw(st.booleans()) else None
    if broken is not None:
        case = BREAKS[broken][0](case)
    return case, broken


@settings(max_examples=60)
@given(call=any_conv_arguments(), seed=st.integers(0, 2**32 - 1))
def test_any_arguments_give_a_clean_error_or_the_reference_result(call, seed):
    """No shape or option may crash a kernel or make it read outside its arrays.

    Valid calls give every tier the same numbers; each kind of broken call gives every
    tier the same clean error.
    """
    case, broken = call
    note(f"{case}, broken: {broken}")
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    options = {k: case[k] for k in ("stride", "padding", "dilation")}
    results = {}
    for tier in kernels.TIERS:
        with kernels.use_tier(tier):
            try:
                results[tier] = F.conv2d(tr.tensor(x), tr.tensor(w), **options).numpy()
            except (ValueError, TypeError) as error:
                results[tier] = str(error)
    if broken is None:
        assert not isinstance(results["reference"], str), results["reference"]
        assert results["reference"].ndim == x.ndim
        for tier in FAST_TIERS:
            np.testing.assert_allclose(results[tier], results["reference"], rtol=1e-10, atol=1e-10)
    else:
        assert isinstance(results["reference"], str), f"{broken}: no error"
        assert BREAKS[broken][1] in results["reference"]
        for tier in FAST_TIERS:
            assert results[tier] == results["reference"]


# ---- against PyTorch, and without the JIT ----------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "options"),
    [
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
        ((2, 4, 9, 7), (6, 4, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(2, 1))),
        ((1, 3, 16, 16), (8, 3, 7, 7), dict(stride=2, padding=3)),
        ((2, 8, 6, 6), (4, 8, 1, 1), dict(stride=2)),
        ((2, 8, 6, 6), (4, 8, 1, 1), {}),  # pointwise: read NCHW in place
        ((3, 5, 5), (2, 3, 3, 3), dict(padding=1)),  # unbatched
    ],
)
def test_matches_pytorch(x_shape, w_shape, options):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    compare_with_torch(lambda lib, x, w, b: lib.nn.functional.conv2d(x, w, b, **options), x, w, b)


@pytest.mark.parametrize("tier", kernels.TIERS)
def test_bias_gradient_is_skipped_when_there_is_no_bias(tier):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 3, 2))
    options = ((1, 1), (1, 0), (1, 1))
    module = kernels.KERNELS["conv2d/im2col"][tier]
    g = rng.standard_normal(module.conv2d_forward(x, w, None, *options).shape)
    with_db = module.conv2d_backward(g, x, w, *options)
    without = module.conv2d_backward(g, x, w, *options, bias_grad=False)
    assert without[2] is None
    np.testing.assert_allclose(with_db[2], g.sum(axis=(0, 2, 3)), rtol=1e-12)
    for a, b in zip(with_db[:2], without[:2]):
        np.testing.assert_array_equal(a, b)


def test_numba_tier_is_safe_from_several_python_threads():
    """Two threads convolving at once get what each would get alone.

    The columns' work memory is reused from call to call; shared between threads,
    one thread's im2col would overwrite columns another is multiplying (NumPy
    releases the GIL inside a matrix product).
    """
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 6, 3, 3)).astype(np.float32)
    inputs = [rng.standard_normal((4, 6, 12, 12)).astype(np.float32) for _ in range(8)]
    options = ((1, 1), (1, 1), (1, 1))

    def work(x):
        y = im2col_numba.conv2d_forward(x, w, None, *options)
        dx, dw, _ = im2col_numba.conv2d_backward(np.ones_like(y), x, w, *options, bias_grad=False)
        return y, dx, dw

    alone = [work(x) for x in inputs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(20):
            together = list(pool.map(work, inputs))
            for mine, theirs in zip(together, alone):
                for a, b in zip(mine, theirs):
                    np.testing.assert_array_equal(a, b)


def test_numba_tier_runs_with_the_jit_disabled():
    """With NUMBA_DISABLE_JIT=1 the kernels run as plain Python and must give the same numbers."""
    code = textwrap.dedent("""
        import numpy as np
        from tinyres.kernels import conv_reference, im2col_numba
        rng = np.random.default_rng(0)
        x, w, g = rng.standard_normal((5, 3, 5, 4)), rng.standard_normal((2, 3, 3, 2)), None
        options = ((2, 1), (1, 1), (1, 2))
        im2col_numba.BLOCK_ROWS = 1  # blocks of 2 samples: 2 + 2 + 1
        y = im2col_numba.conv2d_forward(x, w, None, *options)
        g = rng.standard_normal(y.shape)
        got = [y, *im2col_numba.conv2d_backward(g, x, w, *options)[:2]]
        want = [conv_reference.conv2d_forward(x, w, None, *options),
                *conv_reference.conv2d_backward(g, x, w, *options)[:2]]
        assert all(np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(got, want))
        import numba
        assert numba.config.DISABLE_JIT
        print("ok")
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
