"""Winograd F(m x m, 3 x 3): its tables, both implementations against the loop reference,
gradcheck, the algorithm choice, and float32 accuracy against a float64 truth."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
from helpers import arrays, float_dtypes
from hypothesis import given, note, settings
from hypothesis import strategies as st

import tinyres as tr
from tinyres import kernels
from tinyres.kernels import conv_reference, im2col_numba, winograd_numba, winograd_reference
from tinyres.nn import functional as F

ONE = (1, 1)


@pytest.mark.parametrize("m", winograd_reference.TILE_SIZES)
def test_written_tables_are_the_ones_derived_from_the_points(m):
    """B^T, G, A^T as written out equal, entry by entry, what interpolation at the points gives."""
    derived = winograd_reference.derive(winograd_reference.POINTS[m])
    for name, exact, written in zip(("B^T", "G", "A^T"), derived, winograd_reference.MATRICES[m]):
        assert len(exact) == written.shape[0] and len(exact[0]) == written.shape[1], name
        for i, row in enumerate(exact):
            for j, value in enumerate(row):
                assert Fraction(written[i, j]).limit_denominator(1000) == value, f"{name}[{i}, {j}]"


@pytest.mark.parametrize("m", winograd_reference.TILE_SIZES)
def test_one_tile_is_the_correlation_of_the_filter_with_the_tile(m):
    """The 1-d identity everything rests on: A^T [(G g) * (B^T d)] = correlation of d with g."""
    BT, G, AT = winograd_reference.MATRICES[m]
    rng = np.random.default_rng(m)
    d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
    want = np.array([d[i : i + 3] @ g for i in range(m)])
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=1e-12, atol=1e-12)


@st.composite
def winograd_cases(draw, max_batch=3, max_channels=5, max_extra=6):
    """(x shape, weight shape, padding) of a 3x3 stride-1 convolution: odd sizes, any padding 0-3."""
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    size = [draw(st.integers(max(1, 3 - 2 * p), max(1, 3 - 2 * p) + max_extra)) for p in padding]
    N, C, C_out = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), draw(
        st.integers(1, max_channels))
    return (N, C, *size), (C_out, C, 3, 3), padding


@contextlib.contextmanager
def one_sample_blocks():
    """Make the Numba Winograd work one sample at a time (several blocks, as large layers do)."""
    saved, winograd_numba.BLOCK_VALUES = winograd_numba.BLOCK_VALUES, 1
    try:
        yield
    finally:
        winograd_numba.BLOCK_VALUES = saved


def _through_the_op(tier, m, x, w, b, padding, upstream):
    """Output and gradients of F.conv2d with Winograd forced, as arrays of the input's dtype."""
    inputs = [None if a is None else tr.tensor(a, requires_grad=True) for a in (x, w, b)]
    with kernels.use_tier(tier), kernels.use_algorithm("winograd", tile=m):
        y = F.conv2d(*inputs, padding=padding)
        y.backward(upstream.astype(y.dtype))
    return [y.detach().numpy()] + [t.grad.numpy() for t in inputs if t is not None]


@settings(max_examples=30)
@given(case=winograd_cases(), dtype=float_dtypes, m=st.sampled_from(winograd_reference.TILE_SIZES),
       bias=st.booleans(), tier=st.sampled_from(["numpy", "numba"]), blocks=st.booleans(), data=st.data())
def test_winograd_agrees_with_the_loop_reference(case, dtype, m, bias, tier, blocks, data):
    """float64 to 1e-10; float32 to 1e-4 (inputs in [-2, 2], at most 45 products a sum)."""
    x_shape, w_shape, padding = case
    note(f"x{x_shape} w{w_shape} padding={padding} m={m} {np.dtype(dtype).name} bias={bias} tier={tier} "
         f"one-sample blocks={blocks}")
    x = data.draw(arrays(x_shape, dtype), label="x")  # C order, transposed or strided views
    w = data.draw(arrays(w_shape, dtype), label="w")
    b = data.draw(arrays(w_shape[:1], dtype), label="b") if bias else None
    as64 = [None if a is None else a.astype(np.float64) for a in (x, w, b)]
    y = conv_reference.conv2d_forward(*as64, ONE, padding, ONE)
    upstream = np.random.default_rng(0).standard_normal(y.shape)
    dx, dw, db = conv_reference.conv2d_backward(upstream, as64[0], as64[1], ONE, padding, ONE)
    want = [y, dx, dw] + ([db] if bias else [])
    with one_sample_blocks() if blocks else contextlib.nullcontext():
        got = _through_the_op(tier, m, x, w, b, padding, upstream)
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    for name, g, e in zip(["output", "dx", "dw", "db"], got, want):
        assert g.dtype == dtype, name
        np.testing.assert_allclose(g, e, **tolerance, err_msg=name)


@settings(max_examples=8)
@given(case=winograd_cases(max_batch=2, max_channels=2, max_extra=3), m=st.sampled_from((2, 4)),
       seed=st.integers(0, 99))
def test_numba_winograd_passes_gradcheck(case, m, seed):
    x_shape, w_shape, padding = case
    rng = np.random.default_rng(seed)
    inputs = [tr.tensor(rng.standard_normal(s), requires_grad=True) for s in (x_shape, w_shape, w_shape[:1])]
    with kernels.use_algorithm("winograd", tile=m), one_sample_blocks():
        assert tr.gradcheck(lambda *t: F.conv2d(*t, padding=padding), inputs, seed=seed)


def test_a_winograd_layer_keeps_the_input_gradient_optional():
    rng = np.random.default_rng(2)
    x = tr.tensor(rng.standard_normal((2, 3, 6, 5)))
    w = tr.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with kernels.use_algorithm("winograd"):
        F.conv2d(x, w, padding=1).sum().backward()
    assert x.grad is None
    want = conv_reference.conv2d_backward(np.ones((2, 4, 6, 5)), x.numpy(), w.detach().numpy(), ONE, ONE, ONE)
    np.testing.assert_allclose(w.grad.numpy(), want[1], rtol=1e-10, atol=1e-10)


def _chosen(x_shape, w_shape, stride, dilation):
    """(module name, tile) that ``kernels.select`` gives this convolution."""
    chosen = kernels.select("conv2d", x_shape=x_shape, w_shape=w_shape, stride=stride, dilation=dilation)
    tile = chosen.forward.keywords["m"] if hasattr(chosen.forward, "keywords") else None
    return chosen.__name__.rsplit(".", 1)[1], tile


def test_auto_picks_winograd_for_large_wide_3x3_layers_only():
    large, wide, narrow = (8, 64, 56, 56), (8, 16, 32, 32), (8, 3, 32, 32)
    assert _chosen(large, (64, 64, 3, 3), ONE, ONE) == ("winograd_numba", 4)
    assert _chosen(large, (32, 64, 3, 3), ONE, ONE)[0] == "direct_numba"  # 32 output channels
    assert _chosen((8, 64, 28, 28), (64, 64, 3, 3), ONE, ONE)[0] == "direct_numba"  # 28x28 plane
    # Up to 64 channels and 3x3, "auto" runs direct convolution (tests/test_direct.py), else im2col:
    assert _chosen(wide, (16, 16, 3, 3), ONE, ONE)[0] == "direct_numba"  # Winograd measured slower there
    assert _chosen(narrow, (16, 3, 3, 3), ONE, ONE)[0] == "direct_numba"
    assert _chosen(wide, (16, 16, 3, 3), (2, 2), ONE)[0] == "direct_numba"  # strided
    assert _chosen(wide, (16, 16, 3, 3), ONE, (2, 2))[0] == "im2col_numba"  # dilated
    assert _chosen(wide, (16, 16, 1, 1), ONE, ONE)[0] == "direct_numba"
    assert _chosen((8, 128, 28, 28), (128, 128, 3, 3), ONE, ONE)[0] == "im2col_numba"
    with kernels.use_algorithm("im2col"):
        assert _chosen(wide, (16, 16, 3, 3), ONE, ONE)[0] == "im2col_numba"
    with kernels.use_algorithm("winograd", tile=2):
        assert _chosen(narrow, (16, 3, 3, 3), ONE, ONE) == ("winograd_numba", 2)
        assert _chosen(wide, (16, 16, 3, 3), (2, 2), ONE)[0] == "im2col_numba"  # does not fit
    with kernels.use_algorithm("winograd"), kernels.use_tier("numpy"):  # no NumPy tier: the reference
        assert _chosen(narrow, (16, 3, 3, 3), ONE, ONE) == ("winograd_reference", None)
    with kernels.use_tier("numpy"):  # auto keeps the NumPy tier on im2col
        assert _chosen(wide, (16, 16, 3, 3), ONE, ONE) == ("im2col_numpy", None)


def test_forcing_winograd_on_a_shape_it_does_not_fit_runs_im2col():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))
    with kernels.use_algorithm("winograd"):
        y = F.conv2d(tr.tensor(x), tr.tensor(w), stride=2, padding=1).numpy()
    np.testing.assert_allclose(y, conv_reference.conv2d_forward(x, w, None, (2, 2), ONE, ONE), rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(use=("fast", None)), "unknown convolution algorithm 'fast'"),
        (dict(use=("winograd", 3)), "tile must be None, or 2 or 4"),
        (dict(use=("im2col", 4)), "tile must be None, or 2 or 4 with 'winograd'"),
    ],
)
def test_bad_algorithm_choices_are_refused(args, message):
    with pytest.raises(ValueError, match=message), kernels.use_algorithm(*args["use"]):
        pass


@pytest.mark.parametrize("module", [winograd_reference, winograd_numba])
@pytest.mark.parametrize(("w_shape", "stride", "dilation"), [
    ((2, 3, 5, 5), ONE, ONE), ((2, 3, 3, 3), (2, 1), ONE), ((2, 3, 3, 3), ONE, (1, 2)),
])
def test_the_kernels_refuse_what_winograd_cannot_do(module, w_shape, stride, dilation):
    x, w = np.zeros((1, 3, 8, 8)), np.zeros(w_shape)
    with pytest.raises(ValueError, match="winograd: needs a 3x3 kernel, stride"):
        module.conv2d_forward(x, w, None, stride, ONE, dilation)


def test_numba_winograd_refuses_arrays_that_do_not_fit_before_a_kernel_runs():
    x, w = np.zeros((1, 3, 8, 8)), np.zeros((2, 3, 3, 3))
    with pytest.raises(ValueError, match="tile size m must be one of"):
        winograd_numba.conv2d_forward(x, w, None, ONE, ONE, ONE, m=6)
    with pytest.raises(ValueError, match="does not fit weight"):
        winograd_numba.conv2d_forward(np.zeros((1, 4, 8, 8)), w, None, ONE, ONE, ONE)
    with pytest.raises(ValueError, match="gradient shape"):
        winograd_numba.conv2d_backward(np.zeros((1, 2, 7, 8)), x, w, ONE, ONE, ONE)


def test_the_algorithm_choice_stays_in_its_thread():
    def other_thread():
        return kernels.get_algorithm()

    with kernels.use_algorithm("im2col"), concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(other_thread).result() == ("auto", None)
        assert kernels.get_algorithm() == ("im2col", None)


def test_winograd_from_several_python_threads_gets_what_each_gets_alone():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 6, 3, 3)).astype(np.float32)
    inputs = [rng.standard_normal((4, 6, 12, 12)).astype(np.float32) for _ in range(6)]

    def work(x):
        y = winograd_numba.conv2d_forward(x, w, None, ONE, ONE, ONE)
        return (y, *winograd_numba.conv2d_backward(np.ones_like(y), x, w, ONE, ONE, ONE, bias_grad=False)[:2])

    alone = [work(x) for x in inputs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        for _ in range(5):
            for mine, theirs in zip(pool.map(work, inputs), alone):
                for a, b in zip(mine, theirs):
                    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("m", winograd_reference.TILE_SIZES)
def test_float32_error_is_near_im2col_error(m):
    """Against a float64 truth, on a ResNet-like layer: F(2x2) within 2x im2col's float32 error,
    F(4x4) within 10x (its transforms multiply by up to 8 and divide by 24), and small in absolute terms.
    The measured figures for every benchmark shape are in benchmarks/README.md."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 32, 16, 16))
    w = rng.standard_normal((32, 32, 3, 3)) / np.sqrt(9 * 32)
    truth = conv_reference.conv2d_forward(x, w, None, ONE, ONE, ONE)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    scale = np.abs(truth).max()
    ours = np.abs(winograd_numba.conv2d_forward(x32, w32, None, ONE, ONE, ONE, m=m) - truth).max() / scale
    im2col = np.abs(im2col_numba.conv2d_forward(x32, w32, None, ONE, ONE, ONE) - truth).max() / scale
    message = f"relative error: winograd F({m}) {ours:.2e}, im2col {im2col:.2e}"
    assert ours < {2: 2, 4: 10}[m] * im2col and ours < 1e-5, message


def test_numba_winograd_runs_with_the_jit_disabled():
    code = textwrap.dedent("""
        import numpy as np
        from tinyres.kernels import conv_reference, winograd_numba
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((2, 3, 3, 3))
        for m, p in ((2, (1, 0)), (4, (3, 2))):
            y = winograd_numba.conv2d_forward(x, w, None, (1, 1), p, (1, 1), m=m)
            g = rng.standard_normal(y.shape)
            got = [y, *winograd_numba.conv2d_backward(g, x, w, (1, 1), p, (1, 1), m=m)[:2]]
            want = [conv_reference.conv2d_forward(x, w, None, (1, 1), p, (1, 1)),
                    *conv_reference.conv2d_backward(g, x, w, (1, 1), p, (1, 1))[:2]]
            assert all(np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(got, want))
        import numba
        assert numba.config.DISABLE_JIT
        print("ok")
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
