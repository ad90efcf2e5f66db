"""Direct convolution (``conv2d/direct``): the blocked loop nest against the loop reference
(float64, 1e-10), the compiled float32 kernels against a float64 truth, every ResNet
layer kind, drawn shapes and layouts, thread counts, the fallbacks and the refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import tinyres as tr
from tinyres import kernels
from tinyres.kernels import conv_reference, direct_numba, direct_reference, im2col_numba, threads
from tinyres.nn import functional as F
from tinyres.testing.strategies import LAYOUTS, make_array

ONE = (1, 1)

# name -> (x shape, w shape, stride, padding): every layer kind of the ResNets, small, with
# channel counts that are not multiples of 16 (1, 3, 5, 17, 20) and more than one block.
LAYERS = {
    "3x3 stride 1": ((2, 5, 6, 7), (20, 5, 3, 3), (1, 1), (1, 1)),
    "3x3 stride 2": ((2, 4, 7, 6), (17, 4, 3, 3), (2, 2), (1, 1)),
    "1x1 stride 1": ((2, 6, 5, 5), (18, 6, 1, 1), (1, 1), (0, 0)),
    "1x1 stride 2": ((2, 6, 5, 6), (3, 6, 1, 1), (2, 2), (0, 0)),
    "7x7 stem": ((1, 3, 13, 12), (16, 3, 7, 7), (2, 2), (3, 3)),
    "one channel": ((2, 1, 6, 5), (1, 1, 3, 3), (1, 1), (1, 1)),
    "mixed strides and paddings": ((2, 3, 6, 9), (5, 3, 3, 2), (2, 1), (0, 2)),
    "32 channels, two full blocks": ((3, 32, 5, 5), (32, 32, 3, 3), (1, 1), (1, 1)),
}


def _case(name: str, dtype=np.float64, seed: int = 0):
    x_shape, w_shape, stride, padding = LAYERS[name]
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    y = conv_reference.conv2d_forward(x, w, b, stride, padding, ONE)
    g = rng.standard_normal(y.shape)
    return [a.astype(dtype) for a in (x, w, b, g)], stride, padding


def _run(module, x, w, b, g, stride, padding):
    """[y, dx, dw, db] of ``module``'s array functions."""
    y = module.conv2d_forward(x, w, b, stride, padding, ONE)
    return [y, *module.conv2d_backward(g, x, w, stride, padding, ONE)]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_the_blocked_loop_nest_is_the_loop_reference(name):
    """float64: the direct reference (tiles, packing, phase classes, chunks) is conv_reference to 1e-10."""
    arrays, stride, padding = _case(name)
    for got, want, what in zip(_run(direct_reference, *arrays, stride, padding),
                                _run(conv_reference, *arrays, stride, padding), ("y", "dx", "dw", "db")):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=what)


def _relative_errors(got, truth):
    return [float(np.abs(np.asarray(a, np.float64) - t).max() / np.abs(t).max()) for a, t in zip(got, truth)]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_compiled_float32_is_as_accurate_as_im2col_against_a_float64_truth(name):
    """The compiled float32 kernels against the float64 loop reference, beside im2col's float32 error
    on the same case: within 4x of it (plus float32's own resolution) and below 1e-5."""
    arrays, stride, padding = _case(name)
    truth = _run(conv_reference, *arrays, stride, padding)
    single = [a.astype(np.float32) for a in arrays]
    ours = _relative_errors(_run(direct_numba, *single, stride, padding), truth)
    theirs = _relative_errors(_run(im2col_numba, *single, stride, padding), truth)
    for what, mine, im2col in zip(("y", "dx", "dw", "db"), ours, theirs):
        message = f"{name} {what}: direct {mine:.2e}, im2col {im2col:.2e}"
        assert mine < 1e-5 and mine < 4 * im2col + 2e-7, message


@st.composite
def layers(draw):
    """(x shape, w shape, stride, padding) of any undilated convolution with a non-empty output."""
    k = (draw(st.integers(1, 4)), draw(st.sampled_from([1, 2, 3, 7])))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    smallest = [max(1, k[a] - 2 * padding[a]) for a in (0, 1)]
    size = [draw(st.integers(low, low + 6)) for low in smallest]
    N, C, C_out = draw(st.integers(1, 3)), draw(st.integers(1, 20)), draw(st.integers(1, 35))
    return (N, C, *size), (C_out, C, *k), stride, padding


@settings(max_examples=40, deadline=None)
@given(layer=layers(), layouts=st.tuples(*[st.sampled_from(LAYOUTS)] * 3), seed=st.integers(0, 2**16),
       input_grad=st.booleans())
def test_compiled_kernels_agree_with_the_reference_for_drawn_layers_and_layouts(layer, layouts, seed,
                                                                                input_grad):
    x_shape, w_shape, stride, padding = layer
    note(f"x {x_shape}, w {w_shape}, stride {stride}, padding {padding}, layouts {layouts}")
    x = make_array(x_shape, layouts[0], seed)
    w = make_array(w_shape, layouts[1], seed + 1)
    y = conv_reference.conv2d_forward(x, w, None, stride, padding, ONE)
    g = make_array(y.shape, layouts[2], seed + 2)
    truth = [y, *conv_reference.conv2d_backward(g, x, w, stride, padding, ONE, bias_grad=False)[:2]]
    x32, w32, g32 = (a.astype(np.float32) for a in (x, w, g))  # astype keeps each layout
    y32 = direct_numba.conv2d_forward(x32, w32, None, stride, padding, ONE)
    dx, dw, db = direct_numba.conv2d_backward(g32, x32, w32, stride, padding, ONE, input_grad, False)
    assert db is None and (dx is None) == (not input_grad)
    got, want = [y32, dw], [truth[0], truth[2]]
    if input_grad:
        got, want = got + [dx], want + [truth[1]]
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(1.0, np.abs(b).max()))


def test_thread_counts_give_identical_results():
    """Forward, input and weight gradient bit for bit the same with 1 and 2 threads: the weight
    gradient's chunks and their order depend on the batch size only."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((13, 24, 9, 9)).astype(np.float32)
    w = rng.standard_normal((40, 24, 3, 3)).astype(np.float32)
    g = rng.standard_normal((13, 40, 5, 5)).astype(np.float32)
    before = threads.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            threads.set_num_threads(count)
            y = direct_numba.conv2d_forward(x, w, None, (2, 2), ONE, ONE)
            results.append([y, *direct_numba.conv2d_backward(g, x, w, (2, 2), ONE, ONE, bias_grad=False)[:2]])
    finally:
        threads.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_weight_gradient_chunks_depend_on_the_batch_only():
    assert direct_reference.chunks(0).tolist() == [0]
    assert direct_reference.chunks(3).tolist() == [0, 1, 2, 3]
    assert direct_reference.chunks(20).tolist() == [0, 2, 5, 7, 10, 12, 15, 17, 20]


def _through_the_op(x, w, stride, padding, algorithm):
    xt, wt = tr.tensor(x, requires_grad=True), tr.tensor(w, requires_grad=True)
    with kernels.use_algorithm(algorithm):
        y = F.conv2d(xt, wt, stride=stride, padding=padding)
        module = y.grad_fn.kernels
    y.backward(np.ones(y.shape, dtype=y.dtype))
    return module, [y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()]


@pytest.mark.parametrize("name", ["3x3 stride 2", "7x7 stem"])
def test_the_op_runs_direct_in_float32_and_im2col_in_float64(name):
    arrays, stride, padding = _case(name)
    x, w = arrays[:2]
    module, got = _through_the_op(x.astype(np.float32), w.astype(np.float32), stride, padding, "direct")
    assert module is direct_numba
    _, want = _through_the_op(x, w, stride, padding, "im2col")
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    module, got = _through_the_op(x, w, stride, padding, "direct")  # float64: im2col inside, same numbers
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape", [((0, 3, 6, 6), (4, 3, 3, 3)), ((2, 3, 6, 6), (0, 3, 3, 3)),
                                               ((2, 0, 6, 6), (4, 0, 3, 3))])
def test_empty_batches_and_channel_counts_give_what_the_loop_reference_gives(x_shape, w_shape):
    x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
    y = direct_numba.conv2d_forward(x, w, None, ONE, ONE, ONE)
    want = conv_reference.conv2d_forward(x, w, None, ONE, ONE, ONE)
    np.testing.assert_array_equal(y, want)
    g = np.ones(y.shape, np.float32)
    for got, expected in zip(direct_numba.conv2d_backward(g, x, w, ONE, ONE, ONE, bias_grad=False)[:2],
                             conv_reference.conv2d_backward(g, x, w, ONE, ONE, ONE, bias_grad=False)[:2]):
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_dilated_layers_run_im2col_even_when_direct_is_asked_for():
    with kernels.use_algorithm("direct"):
        assert kernels.conv_algorithm((2, 3, 8, 8), (4, 3, 3, 3), ONE, (2, 2)) == ("im2col", None)
        assert kernels.conv_algorithm((2, 3, 8, 8), (4, 3, 3, 3), (2, 2), ONE) == ("direct", None)


@pytest.mark.parametrize("call, message", [
    (lambda x, w, g: direct_numba.conv2d_forward(x[0], w, None, ONE, ONE, ONE), "expected 4 dimensions"),
    (lambda x, w, g: direct_numba.conv2d_forward(x, w[:, :2], None, ONE, ONE, ONE), "3 input channels"),
    (lambda x, w, g: direct_numba.conv2d_forward(x, w, np.ones(5, np.float32), ONE, ONE, ONE), "\\(4,\\)"),
    (lambda x, w, g: direct_numba.conv2d_forward(x, w, None, ONE, ONE, (2, 2)), "dilation"),
    (lambda x, w, g: direct_numba.conv2d_forward(x, w, None, (0, 1), ONE, ONE), "stride"),
    (lambda x, w, g: direct_numba.conv2d_forward(x[:, :, :1], w, None, ONE, (0, 0), ONE), "does not fit"),
    (lambda x, w, g: direct_numba.conv2d_backward(g[:, :, :-1], x, w, ONE, ONE, ONE), "grad: expected shape"),
    (lambda x, w, g: direct_numba.conv2d_backward(g.astype(np.float64), x, w, ONE, ONE, ONE), "float32"),
])
def test_arrays_that_do_not_fit_are_refused_before_a_kernel_runs(call, message):
    x = np.ones((2, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    g = np.ones((2, 4, 5, 5), np.float32)
    with pytest.raises((ValueError, TypeError), match=message):
        call(x, w, g)


def test_direct_runs_with_the_jit_disabled():
    """The vector type exists only in compiled code: with NUMBA_DISABLE_JIT=1 float32 runs im2col."""
    code = textwrap.dedent("""
        import numpy as np
        from tinyres.kernels import conv_reference, direct_numba
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((17, 3, 3, 3))
        x32, w32 = x.astype(np.float32), w.astype(np.float32)
        y = direct_numba.conv2d_forward(x32, w32, None, (2, 1), (1, 1), (1, 1))
        want = conv_reference.conv2d_forward(x, w, None, (2, 1), (1, 1), (1, 1))
        assert np.allclose(y, want, atol=1e-5)
        import numba
        assert numba.config.DISABLE_JIT
        print("ok")
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_auto_picks_direct_for_narrow_small_kernel_layers_only():
    """Measured (kernels.conv_algorithm's docstring, benchmarks/README.md): direct on every CIFAR
    ResNet layer (up to 64 channels, up to 3x3); im2col on wider layers and the 7x7 stem;
    Winograd F(4x4) keeps the large 64-channel planes; the NumPy and reference tiers keep im2col."""
    choose = kernels.conv_algorithm
    assert choose((64, 3, 32, 32), (16, 3, 3, 3), ONE, ONE) == ("direct", None)
    assert choose((64, 16, 32, 32), (32, 16, 3, 3), (2, 2), ONE) == ("direct", None)
    assert choose((64, 64, 8, 8), (64, 64, 3, 3), ONE, ONE) == ("direct", None)
    assert choose((8, 64, 56, 56), (64, 64, 1, 1), ONE, ONE) == ("direct", None)
    assert choose((8, 64, 56, 56), (64, 64, 3, 3), ONE, ONE) == ("winograd", 4)
    assert choose((8, 128, 28, 28), (128, 128, 3, 3), ONE, ONE) == ("im2col", None)
    assert choose((8, 256, 56, 56), (64, 256, 1, 1), ONE, ONE) == ("im2col", None)
    assert choose((8, 3, 224, 224), (64, 3, 7, 7), (2, 2), ONE) == ("im2col", None)
    assert choose((64, 16, 32, 32), (16, 16, 3, 3), ONE, (2, 2)) == ("im2col", None)
    for tier in ("numpy", "reference"):
        with kernels.use_tier(tier):
            assert choose((64, 16, 32, 32), (16, 16, 3, 3), ONE, ONE) == ("im2col", None)


def test_fetch_add_returns_the_value_before_and_adds():
    from numba import njit

    from tinyres.kernels.simd import address, fetch_add

    @njit
    def twice(counter):
        return fetch_add(address(counter), 1), fetch_add(address(counter), 5)

    counter = np.array([7], np.int64)
    assert twice(counter) == (7, 8) and counter[0] == 13


def test_shared_work_gives_every_unit_to_exactly_one_thread():
    """``_share``: two threads take units from one counter; none is skipped or taken twice.
    A counter read and written in two steps (fetch_add made non-atomic) gives some units to
    both threads: it failed this test in about half the runs on the 2-core machine under load."""
    from numba import njit

    from tinyres.kernels.simd import address, fetch_add

    @njit(nogil=True)
    def take(_run, _runs, counter, taken, work):
        while True:
            unit = fetch_add(address(counter), 1)
            if unit >= len(taken):
                break
            value = work[unit % 8]
            for _ in range(50):  # some work (a chain LLVM cannot fold), so both threads are inside at once
                value = value * 0.999 + 1.0
            work[unit % 8] = value
            taken[unit] += 1

    before = threads.get_num_threads()
    try:
        threads.set_num_threads(2)
        for _ in range(20):
            taken = np.zeros(400_000, np.int64)
            direct_numba._share(take, len(taken), taken, np.zeros(8))
            assert (taken == 1).all(), np.flatnonzero(taken != 1)[:10]
    finally:
        threads.set_num_threads(before)


def test_input_gradient_pixels_no_tap_reaches_are_zero_in_reused_memory():
    """A 1x1 stride-2 layer: three of the four phase classes get no tap, so their dx pixels are
    written as zeros, not left as whatever the reused buffer (kernels.buffers) held."""
    from tinyres.kernels import buffers

    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 16, 40, 40)).astype(np.float32)  # dx: 400 KB, a kept block
    w = rng.standard_normal((16, 16, 1, 1)).astype(np.float32)
    g = rng.standard_normal((4, 16, 20, 20)).astype(np.float32)
    want = conv_reference.conv2d_backward(g.astype(float), x.astype(float), w.astype(float), (2, 2), (0, 0),
                                          ONE, bias_grad=False)[0]
    for _ in range(2):
        dirty = buffers.empty((4, 40, 40, 16), np.float32)
        dirty.fill(np.nan)
        del dirty
        dx = direct_numba.conv2d_backward(g, x, w, (2, 2), (0, 0), ONE, bias_grad=False)[0]
        np.testing.assert_allclose(dx, want, rtol=0, atol=1e-5 * np.abs(want).max())
