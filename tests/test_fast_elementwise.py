"""ReLU's fast backward against NumPy, and every Numba kernel of batch norm, max pooling
and ReLU with the JIT switched off (NUMBA_DISABLE_JIT=1, plain Python).

Addition has no fast path: a Numba kernel measured no faster than NumPy's ``x + y``
(benchmarks/README.md).
"""

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from helpers import arrays, away_from, float_dtypes, leaf, shapes
from hypothesis import given
from hypothesis import strategies as st

import tinyres as tr
from tinyres import kernels
from tinyres.kernels import relu_numba
from tinyres.kernels.layout import is_channels_last
from tinyres.ops import elementwise

original = relu_numba.relu_backward


@contextlib.contextmanager
def always_fast():
    """Send every array, however small, down the Numba path (within one example)."""
    saved, relu_numba.FAST_SIZE = relu_numba.FAST_SIZE, 1
    try:
        yield
    finally:
        relu_numba.FAST_SIZE = saved


def relu_step(tier, x, upstream):
    x = leaf(x)
    with kernels.use_tier(tier), always_fast():
        y = tr.relu(x)
        y.backward(tr.tensor(upstream))
    return y.detach().numpy(), x.grad.numpy()


@given(data=st.data(), dtype=float_dtypes)
def test_fast_relu_matches_numpy(data, dtype):
    shape = data.draw(shapes(1, 4))
    x = data.draw(arrays(shape, dtype=dtype))
    x = data.draw(st.sampled_from([x, np.round(x)]))  # rounded: exact zeros, the kink
    upstream = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    for got, want in zip(relu_step("numba", x, upstream), relu_step("reference", x, upstream)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)


@given(data=st.data())
def test_fast_paths_pass_gradcheck(data):
    shape = data.draw(shapes(1, 2))  # every element is perturbed: keep it small
    x = away_from(data.draw(arrays(shape)))
    y = data.draw(arrays(shape))
    inputs = [leaf(x), leaf(y)]
    with always_fast():
        assert tr.gradcheck(lambda a, b: tr.relu(a + b) + a, inputs)


@given(data=st.data(), dtype=float_dtypes)
def test_fast_relu_backward_keeps_a_channels_last_layout(data, dtype):
    """NHWC memory viewed as NCHW (a convolution's output): dx equals NumPy's, same layout."""
    n, c, h, w = (data.draw(st.integers(1, 3)), *(data.draw(st.integers(2, 4)) for _ in range(3)))
    x = np.round(data.draw(arrays((n, h, w, c), dtype=dtype, layout="c"))).transpose(0, 3, 1, 2)
    z = np.maximum(x, dtype(0))
    upstream = data.draw(arrays((n, c, h, w), dtype=dtype))  # any layout
    upstream = data.draw(st.sampled_from([upstream, np.ascontiguousarray(z + upstream, dtype=dtype)]))
    dx = relu_numba.relu_backward(upstream, z)
    np.testing.assert_array_equal(dx, upstream * (z > 0))
    assert dx.dtype == dtype and dx.transpose(0, 2, 3, 1).flags.c_contiguous


@given(data=st.data(), dtype=float_dtypes)
def test_relu_forward_equals_numpy_in_every_layout(data, dtype):
    """The forward writes into a kept block in x's own layout; the values are NumPy's (NaN too)."""
    n, c, h, w = (data.draw(st.integers(1, 3)), *(data.draw(st.integers(2, 4)) for _ in range(3)))
    nhwc = data.draw(arrays((n, h, w, c), dtype=dtype, layout="c"))
    x = data.draw(st.sampled_from([nhwc.transpose(0, 3, 1, 2), np.ascontiguousarray(nhwc), nhwc[:, ::2]]))
    x = x.copy() if data.draw(st.booleans()) else x
    x.flat[0] = data.draw(st.sampled_from([np.nan, 0.0, -1.0]))
    z, saved = relu_numba.forward(x)
    np.testing.assert_array_equal(z, np.maximum(x, dtype(0)))
    assert z.dtype == dtype and saved is z
    if is_channels_last(x):
        assert is_channels_last(z)


def test_relu_forward_reuses_freed_memory():
    """A ResNet-sized output comes from ``buffers``: the block a freed output held, not new pages."""
    x = np.random.default_rng(0).standard_normal((64, 16, 32, 32)).astype(np.float32)
    z, _ = relu_numba.forward(x)
    address = z.__array_interface__["data"][0]
    del z, _
    assert relu_numba.forward(x)[0].__array_interface__["data"][0] == address


def test_large_arrays_take_the_kernel_and_agree(monkeypatch):
    x = np.random.default_rng(0).standard_normal(relu_numba.FAST_SIZE).astype(np.float32)
    x[:3] = [np.nan, -0.0, 0.0]
    grad = np.cos(np.arange(x.size, dtype=np.float32))
    fn = elementwise.Relu()
    z = fn.forward(x)
    np.testing.assert_array_equal(z, np.maximum(x, np.float32(0)))  # NaN propagates, as in PyTorch
    calls = []
    monkeypatch.setattr(relu_numba, "relu_backward", lambda *a: calls.append(1) or original(*a))
    (dx,) = fn.backward(grad)
    assert calls, "an array of FAST_SIZE elements should take the Numba kernel"
    np.testing.assert_array_equal(dx, grad * (z > 0))


NO_JIT_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import numba
    assert numba.config.DISABLE_JIT
    import tinyres as tr
    import tinyres.nn.functional as F
    from tinyres import kernels
    from tinyres.kernels import relu_numba

    relu_numba.FAST_SIZE = 1
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 3, 5, 4))
    stats = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    layers = [
        lambda t: F.batch_norm(t, None, None, tr.tensor(stats[1]), None, training=True),
        lambda t: F.batch_norm(t, stats[0].copy(), stats[1].copy(), None, None),
        lambda t: F.max_pool2d(t, 3, stride=1, padding=1, dilation=(1, 2)),
        lambda t: tr.relu(t) + t,
    ]
    # NCHW, and channels last (NHWC memory viewed as NCHW: the batch norm and ReLU rows paths)
    inputs = [x0, np.ascontiguousarray(x0.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)]
    for layer, x in [(layer, x) for layer in layers for x in inputs]:
        results = []
        for tier in ("numba", "reference"):
            t = tr.tensor(x, requires_grad=True)
            with kernels.use_tier(tier):
                y = layer(t)
                y.backward(tr.tensor(np.cos(np.arange(y.numel())).reshape(y.shape)))
            results.append((y.detach().numpy(), t.grad.numpy()))
        for got, want in zip(*results):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    print("ok")
    """
)


def test_kernels_run_without_the_jit():
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", NO_JIT_SCRIPT], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
