"""batch_norm: the Numba tier against the NumPy reference, gradients, PyTorch, errors."""

import numpy as np
import pytest
from helpers import arrays, compare_with_torch, float_dtypes, leaf
from hypothesis import assume, given
from hypothesis import strategies as st

import tinyres as tr
import tinyres.nn.functional as F
from tinyres import kernels
from tinyres.kernels import batchnorm_numba


@st.composite
def bn_cases(draw, max_side=4):
    """An (N, C[, H, W]) input in some layout, optional affine, and running stats."""
    dtype = draw(float_dtypes)
    spatial = draw(st.sampled_from([(), (draw(st.integers(1, max_side)),),
                                    (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))]))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    x = draw(arrays((n, c, *spatial), dtype=dtype))
    affine = draw(st.booleans())
    training = draw(st.booleans())
    m = x.size // c
    assume(not training or m > 1)
    # A channel of nearly equal values makes 1/sqrt(var + eps) huge and every
    # comparison ill-conditioned; keep the variance clear of zero.
    assume(not training or x.swapaxes(0, 1).reshape(c, -1).var(axis=1).min() > 1e-2)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weight = rng.uniform(0.5, 2, c).astype(dtype) if affine else None
    bias = rng.uniform(-1, 1, c).astype(dtype) if affine else None
    stats = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    return x, weight, bias, stats, training


def run(tier, x, weight, bias, stats, training, upstream):
    """Forward and backward under ``tier``: output, gradients and updated running stats."""
    mean, var = stats[0].copy(), stats[1].copy()
    leaves = [leaf(a) if a is not None else None for a in (x, weight, bias)]
    with kernels.use_tier(tier):
        y = F.batch_norm(leaves[0], mean, var, leaves[1], leaves[2], training=training, momentum=0.3)
        (y * tr.tensor(upstream.astype(x.dtype))).sum().backward()
    grads = [t.grad.numpy() for t in leaves if t is not None]
    return [y.detach().numpy(), *grads, mean, var]


@given(bn_cases())
def test_numba_matches_reference(case):
    x, weight, bias, stats, training = case
    upstream = np.random.default_rng(0).standard_normal(x.shape)
    ours = run("numba", x, weight, bias, stats, training, upstream)
    reference = run("reference", x, weight, bias, stats, training, upstream)
    tol = 1e-10 if x.dtype == np.float64 else 1e-4
    for got, want in zip(ours, reference):
        assert got.dtype == want.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"x {x.shape} {x.dtype}")


@given(bn_cases(max_side=3))
def test_reference_passes_gradcheck(case):
    x, weight, bias, stats, training = case
    stats = tuple(s.astype(np.float64) for s in stats)
    inputs = [tr.tensor(a.astype(np.float64), requires_grad=True) for a in (x, weight, bias) if a is not None]

    def fn(*t):
        w, b = (t[1], t[2]) if weight is not None else (None, None)
        return F.batch_norm(t[0], stats[0].copy(), stats[1].copy(), w, b, training=training)

    with kernels.use_tier("reference"):
        assert tr.gradcheck(fn, inputs)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 4), (3, 2, 7)])
@pytest.mark.parametrize("affine", [True, False])
def test_training_steps_match_torch(shape, affine):
    """Forward, all gradients, and running statistics after several training steps."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    c = shape[1]
    ours_stats = [np.zeros(c, np.float32), np.ones(c, np.float32)]
    theirs_stats = [torch.zeros(c), torch.ones(c)]
    weight, bias = rng.uniform(0.5, 2, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    extra = (weight, bias) if affine else ()
    for step in range(4):
        x = (rng.standard_normal(shape) * 3 + step).astype(np.float32)

        def expr(lib, x, *wb, stats=None):
            stats = ours_stats if lib is tr else theirs_stats
            return lib.nn.functional.batch_norm(x, *stats, *wb, training=True, momentum=0.2)

        compare_with_torch(expr, x, *extra, seed=step)
        np.testing.assert_allclose(ours_stats[0], theirs_stats[0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours_stats[1], theirs_stats[1].numpy(), rtol=1e-5, atol=1e-6)
    x = rng.standard_normal(shape).astype(np.float32)
    compare_with_torch(
        lambda lib, x, *wb: lib.nn.functional.batch_norm(
            x, *(ours_stats if lib is tr else theirs_stats), *wb, training=False
        ),
        x,
        *extra,
    )


def test_running_buffers_may_be_none_and_tensors_update_in_place():
    x = tr.randn(4, 2, 3, 3)
    F.batch_norm(x, None, None, training=True)
    mean, var = tr.zeros(2), tr.ones(2)
    F.batch_norm(x, mean, var, training=True, momentum=1.0)
    np.testing.assert_allclose(mean.numpy(), x.numpy().mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var.numpy(), x.numpy().var(axis=(0, 2, 3), ddof=1), rtol=1e-5)


def test_eval_mode_leaves_running_stats_alone():
    mean, var = np.zeros(2, np.float32), np.ones(2, np.float32)
    y = F.batch_norm(tr.randn(1, 2, 1, 1), mean, var, training=False)
    assert y.shape == (1, 2, 1, 1)
    assert mean.tolist() == [0, 0] and var.tolist() == [1, 1]


# ---- hand-derived values (no PyTorch needed) -------------------------------------------


def pair(a: float, d: float) -> tr.Tensor:
    """A one-channel batch (a - d, a + d): mean a, biased variance d², unbiased 2d²."""
    return tr.tensor(np.array([a - d, a + d], dtype=np.float32).reshape(2, 1, 1, 1))


@pytest.mark.parametrize("tier", kernels.TIERS)
def test_momentum_none_keeps_the_cumulative_average_hand_derived(tier):
    # Batch means 2, 4, 0 with d = 1, 1, 2 (unbiased variances 2, 2, 8): the n-th batch
    # weighs 1/n, so the running mean is 2, 3, 2 and the running variance 2, 2, 4.
    # (momentum 0.1 would give mean 0.2 after the first batch.)
    bn = tr.nn.BatchNorm2d(1, momentum=None)
    with kernels.use_tier(tier):
        for (a, d), mean, var in zip([(2, 1), (4, 1), (0, 2)], [2, 3, 2], [2, 2, 4]):
            bn(pair(a, d))
            assert bn.running_mean.item() == pytest.approx(mean, rel=1e-6)
            assert bn.running_var.item() == pytest.approx(var, rel=1e-6)
    assert bn.num_batches_tracked.item() == 3


@pytest.mark.parametrize("tier", kernels.TIERS)
def test_eps_is_used_in_training_backward_and_eval_hand_derived(tier):
    # x = (-1, 1): mean 0, biased variance 1; eps 3 -> sigma = sqrt(1 + 3) = 2, y = (-0.5, 0.5).
    # Backward with upstream (1, 0), M = 2, xhat = (-0.5, 0.5):
    #   dx = (M dy - sum dy - xhat sum(dy xhat)) / (M sigma) = ((2, 0) - 1 - (0.25, -0.25)) / 4
    #      = (0.1875, -0.1875).
    # Running variance after the batch: 0.9 * 1 + 0.1 * 2 = 1.1; in eval y = x / sqrt(1.1 + 3).
    bn = tr.nn.BatchNorm2d(1, eps=3.0)
    x = pair(0, 1)
    x.requires_grad = True
    with kernels.use_tier(tier):
        y = bn(x)
        np.testing.assert_allclose(y.detach().numpy().ravel(), [-0.5, 0.5], rtol=1e-6)
        y.backward(tr.tensor(np.array([1.0, 0.0]).reshape(2, 1, 1, 1)))
        np.testing.assert_allclose(x.grad.numpy().ravel(), [0.1875, -0.1875], rtol=1e-6)
        bn.eval()
        y = bn(pair(0, 1))
    np.testing.assert_allclose(y.detach().numpy().ravel(), np.array([-1, 1]) / np.sqrt(4.1), rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: F.batch_norm(tr.randn(1, 3, 1, 1), None, None, training=True), ValueError,
         "Expected more than 1 value per channel when training, got input size (1, 3, 1, 1)"),
        (lambda: F.batch_norm(tr.randn(1, 3), None, None, training=True), ValueError,
         "more than 1 value per channel"),
        (lambda: F.batch_norm(tr.randn(2, 3, 2, 2), None, None, tr.ones(4), training=True), ValueError,
         "weight has shape (4,), expected (3,)"),
        (lambda: F.batch_norm(tr.randn(2, 3, 2, 2), tr.zeros(2), tr.ones(3)), ValueError,
         "running_mean has shape (2,), expected (3,)"),
        (lambda: F.batch_norm(tr.randn(2, 3, 2, 2), None, None), ValueError, "eval mode"),
        (lambda: F.batch_norm(tr.randn(3), None, None, training=True), ValueError,
         "expected a 2-D or 3-D or 4-D input"),
        (lambda: F.batch_norm(tr.ones(2, 3, dtype=tr.int64), None, None, training=True), TypeError,
         "expected a floating-point input, got dtype int64"),
        (lambda: F.batch_norm(tr.randn(2, 3), None, None, tr.ones(3, dtype=tr.float64), training=True),
         TypeError, "float32, float64"),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=None) as info:
        call()
    assert message in str(info.value)


def channels_last(a: np.ndarray) -> np.ndarray:
    """``a`` (N, C, H, W) as a view of NHWC memory, the layout convolutions return."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@st.composite
def channels_last_cases(draw, max_side=4):
    """A channels-last (N, C, H, W) input (C, H*W > 1: truly not NCHW-contiguous)."""
    dtype = draw(float_dtypes)
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    assume(h * w > 1)
    x = channels_last(draw(arrays((n, c, h, w), dtype=dtype, layout="c")))
    training = draw(st.booleans())
    assume(not training or x.swapaxes(0, 1).reshape(c, -1).var(axis=1).min() > 1e-2)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weight, bias = rng.uniform(0.5, 2, c).astype(dtype), rng.uniform(-1, 1, c).astype(dtype)
    stats = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    return x, weight, bias, stats, training


@given(channels_last_cases(), st.sampled_from(["same", "nchw"]))
def test_channels_last_rows_path_matches_reference_and_keeps_layout(case, grad_layout):
    """The (N*H*W, C) rows kernels: same numbers as the reference, output still channels last."""
    x, weight, bias, stats, training = case
    assert not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous
    upstream = np.random.default_rng(0).standard_normal(x.shape)
    if grad_layout == "same":
        upstream = channels_last(upstream)
    ours = run("numba", x, weight, bias, stats, training, upstream)
    reference = run("reference", np.ascontiguousarray(x), weight, bias, stats, training, upstream)
    tol = 1e-10 if x.dtype == np.float64 else 1e-4
    for got, want in zip(ours, reference):
        assert got.dtype == want.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"x {x.shape} {x.dtype}")
    assert ours[0].transpose(0, 2, 3, 1).flags.c_contiguous, "the output should stay channels last"
    # (The engine stores leaf gradients as C-ordered copies, so ask the kernel for dx's layout.)
    x3 = x.reshape(*x.shape[:2], -1)
    dx, _, _ = batchnorm_numba.batch_norm_backward(upstream.reshape(x3.shape), x3, *stats, weight, training)
    assert dx.reshape(x.shape).transpose(0, 2, 3, 1).flags.c_contiguous, "dx should stay channels last"


def test_channels_last_results_do_not_depend_on_the_thread_count():
    """The rows path sums fixed chunks in a fixed order: bitwise equal with 1, 2 or 3 threads.

    float64, since float32 results would hide a different order of the float64 sums.
    """
    rng = np.random.default_rng(3)
    x = channels_last(rng.standard_normal((4, 3, 9, 9)) * 10 + 3)
    runs = []
    before = tr.get_num_threads()
    for threads in (1, 2, 3):
        tr.set_num_threads(threads)
        try:
            runs.append(run("numba", x, np.ones(3), np.zeros(3), (np.zeros(3), np.ones(3)), True,
                            channels_last(x * x)))
        finally:
            tr.set_num_threads(before)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@given(channels_last_cases(max_side=3))
def test_channels_last_rows_path_passes_gradcheck(case):
    x, weight, bias, stats, training = case
    stats = tuple(s.astype(np.float64) for s in stats)
    inputs = [tr.tensor(channels_last(a.astype(np.float64)) if a.ndim == 4 else a.astype(np.float64),
                        requires_grad=True) for a in (x, weight, bias)]

    def fn(t, w, b):
        assert t.detach().numpy().transpose(0, 2, 3, 1).flags.c_contiguous  # the rows path, not a copy
        return F.batch_norm(t, stats[0].copy(), stats[1].copy(), w, b, training=training)

    assert tr.gradcheck(fn, inputs)
