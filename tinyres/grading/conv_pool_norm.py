"""The checks of the kernel exercises (lessons 5 and 6): convolution with loops, im2col and
col2im, max-pool backward with ties, batch-norm backward.

The truth is the library's loop references (``tinyres.kernels.conv_reference``,
``pool_reference``, ``batchnorm_reference``), its im2col tier, and central differences.
Cases are drawn over batch, channels, sizes, kernel, stride, padding and memory layout.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from hypothesis import strategies as st

from tinyres.engine import Function, Tensor
from tinyres.grading.autograd import DTYPES, SEEDS, gradcheck_or_raise, named_outputs
from tinyres.grading.core import (
    Exercise,
    MismatchError,
    Property,
    call,
    cause,
    compare,
    describe,
    float32_accurate,
    for_examples,
    inputs_unchanged,
    keeps_dtype,
    magnitudes,
    torch_or_skip,
)
from tinyres.kernels import batchnorm_reference, conv_reference, pool_reference
from tinyres.kernels import im2col_numpy as im2col_tier
from tinyres.testing.strategies import LAYOUTS, make_array


@st.composite
def conv_cases(draw, overlapping: bool = False):
    """(x shape, kernel, stride, padding, layout, seed) with at least one output pixel."""
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, min(2, k) if overlapping else 2))
    padding = draw(st.integers(0, k - 1))
    low = max(1, k - 2 * padding)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(low, 5)),
             draw(st.integers(low, 5)))
    return shape, k, stride, padding, draw(st.sampled_from(LAYOUTS)), draw(SEEDS)


def _pairs(k: int, stride: int, padding: int) -> dict:
    return dict(stride=(stride, stride), padding=(padding, padding), dilation=(1, 1))


# ---- ex08: convolution with loops --------------------------------------------------------------


def _conv_inputs(case, c_out: int = 2):
    shape, k, stride, padding, layout, seed = case
    x = make_array(shape, layout, seed)
    w = make_array((c_out, shape[1], k, k), layout, seed + 1)
    b = make_array((c_out,), "c", seed + 2)
    return x, w, b, describe(x=x, w=w, stride=stride, padding=padding)


def _check_conv_forward(mod: ModuleType) -> None:
    def body(case):
        x, w, b, example = _conv_inputs(case)
        _, k, stride, padding, _, _ = case
        want = conv_reference.conv2d_forward(x, w, b, **_pairs(k, stride, padding))
        compare("y", want, call(mod.conv2d_forward, x, w, b, stride, padding, example=example), example)

    for_examples(conv_cases(), body)


def _conv_backward_truth(case):
    x, w, b, example = _conv_inputs(case)
    _, k, stride, padding, _, seed = case
    y = conv_reference.conv2d_forward(x, w, b, **_pairs(k, stride, padding))
    grad = make_array(y.shape, "c", seed + 3)
    truth = conv_reference.conv2d_backward(grad, x, w, **_pairs(k, stride, padding))
    return x, w, grad, stride, padding, truth, example


def _check_conv_dx(mod: ModuleType) -> None:
    def body(case):
        x, w, grad, stride, padding, (dx, _, _), example = _conv_backward_truth(case)
        got = call(mod.conv2d_backward, grad, x, w, stride, padding, example=example)
        compare("dx", dx, got[0], example)

    for_examples(conv_cases(), body)


def _check_conv_dw_db(mod: ModuleType) -> None:
    def body(case):
        x, w, grad, stride, padding, (_, dw, db), example = _conv_backward_truth(case)
        got = call(mod.conv2d_backward, grad, x, w, stride, padding, example=example)
        compare("dw", dw, got[1], example)
        compare("db", db, got[2], example)

    for_examples(conv_cases(), body)


def _learner_conv(mod: ModuleType, stride: int, padding: int) -> type[Function]:
    """The learner's forward and backward as one Function, so gradcheck can run it."""

    class LearnerConv(Function):
        def forward(self, x, w, b):
            self.x, self.w = x, w
            return call(mod.conv2d_forward, x, w, b, stride, padding)

        def backward(self, grad):
            return call(mod.conv2d_backward, grad, self.x, self.w, stride, padding)

    return LearnerConv


def _check_conv_gradcheck(mod: ModuleType) -> None:
    def body(case):
        x, w, b, example = _conv_inputs(case)
        _, _, stride, padding, _, _ = case
        conv = _learner_conv(mod, stride, padding)
        leaves = tuple(Tensor(a.copy(), requires_grad=True) for a in (x, w, b))
        gradcheck_or_raise(conv.apply, leaves, ("x", "w", "b"), example)

    for_examples(conv_cases(), body)


def _check_conv_torch(mod: ModuleType) -> None:
    torch = torch_or_skip()

    def body(case):
        x, w, b, example = _conv_inputs(case)
        _, _, stride, padding, _, _ = case
        tx, tw, tb = (torch.tensor(np.array(a), requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
        grad = make_array(tuple(ty.shape), "c", case[-1] + 3)
        ty.backward(torch.tensor(grad))
        y = call(mod.conv2d_forward, x, w, b, stride, padding, example=example)
        compare("y (against PyTorch)", ty.detach().numpy(), y, example)
        got = call(mod.conv2d_backward, grad, x, w, stride, padding, example=example)
        for name, want, mine in zip(("dx", "dw", "db"), (tx.grad, tw.grad, tb.grad), got):
            compare(f"{name} (against PyTorch)", want.numpy(), mine, example)

    for_examples(conv_cases(), body)


def _invoke_conv(mod: ModuleType, case):
    case, dtype = case
    x, w, b, example = _conv_inputs(case)
    _, _, stride, padding, _, seed = case
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    y_shape = conv_reference.conv2d_forward(x, w, b, **_pairs(w.shape[2], stride, padding)).shape
    grad = make_array(y_shape, "c", seed + 3, dtype)

    def both(x, w, b, grad):
        return (mod.conv2d_forward(x, w, b, stride, padding), *mod.conv2d_backward(grad, x, w, stride,
                                                                                   padding))

    return both, (x, w, b, grad), example + f", {np.dtype(dtype)}", dtype


EX08 = Exercise(
    "ex08", "05", "conv2d with loops, forward and backward", "ex08_conv2d_loops.py",
    (
        Property("forward equals the loop reference (shapes, strides, padding, layouts)", _check_conv_forward,
                 "no kernel flip (this is a cross-correlation), h = oh*stride - padding + i, skip "
                 "pixels outside the input, and H_out = (H + 2p - k) // s + 1"),
        Property("dx equals the reference backward", _check_conv_dx,
                 "dx[n, c, h, v] += dy[n, o, oh, ow] * w[o, c, i, j] at the same h, v as the forward, "
                 "padding offset included"),
        Property("dw and db equal the reference backward", _check_conv_dw_db,
                 "dw sums x * dy over the batch and the output pixels; db sums dy over batch and pixels"),
        Property("forward and backward together pass a float64 gradient check", _check_conv_gradcheck,
                 "the backward must be exactly the transpose (the vector-Jacobian product) of your forward"),
        Property("forward and backward equal PyTorch's conv2d", _check_conv_torch,
                 "PyTorch computes the same cross-correlation: compare your loops with the reference"),
        keeps_dtype(st.tuples(conv_cases(), DTYPES), _invoke_conv, named_outputs("y", "dx", "dw", "db")),
        inputs_unchanged(st.tuples(conv_cases(), DTYPES), _invoke_conv, "x, w, b, grad"),
        # y sums C_in * k * k products, dw and db N * Ho * Wo: the scale is the same sums of |terms|.
        float32_accurate(conv_cases(), _invoke_conv, named_outputs("y", "dx", "dw", "db"),
                         "ex08_conv2d_loops.py", size=lambda args: max(args[1][0].size, args[3][:, 0].size),
                         scale=magnitudes()),
    ),
)

# ---- ex09: im2col and col2im --------------------------------------------------------------------


def _cols_truth(x: np.ndarray, k: int, stride: int, padding: int) -> np.ndarray:
    """The library's im2col view, reordered to rows (n, oh, ow) and columns (c, i, j)."""
    view = im2col_tier.im2col(x, (k, k), (stride, stride), (padding, padding), (1, 1))  # (N,C,Ho,Wo,k,k)
    n, c, ho, wo = view.shape[:4]
    return view.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)


def _col2im_truth(cols: np.ndarray, x_shape, k: int, stride: int, padding: int) -> np.ndarray:
    n, c, h, w = x_shape
    ho = conv_reference.output_size(h, k, stride, padding, 1)
    wo = conv_reference.output_size(w, k, stride, padding, 1)
    fields = cols.reshape(n, ho, wo, c, k, k).transpose(0, 3, 4, 5, 1, 2)  # (N, C, k, k, Ho, Wo)
    return im2col_tier.col2im(fields, x_shape, (stride, stride), (padding, padding), (1, 1))


def _check_im2col(mod: ModuleType) -> None:
    def body(case):
        shape, k, stride, padding, layout, seed = case
        x = make_array(shape, layout, seed)
        example = describe(x=x, kernel=k, stride=stride, padding=padding)
        compare("cols", _cols_truth(x, k, stride, padding),
                call(mod.im2col, x, k, stride, padding, example=example), example, rtol=0, atol=0)

    for_examples(conv_cases(), body)


def _check_col2im(mod: ModuleType) -> None:
    def body(case):
        shape, k, stride, padding, _, seed = case
        rows = _cols_truth(np.zeros(shape), k, stride, padding).shape
        cols = make_array(rows, "c", seed)
        example = describe(cols=cols, x_shape=shape, kernel=k, stride=stride, padding=padding)
        compare("col2im(cols)", _col2im_truth(cols, shape, k, stride, padding),
                call(mod.col2im, cols, shape, k, stride, padding, example=example), example)

    for_examples(conv_cases(overlapping=True), body)


def _check_transpose(mod: ModuleType) -> None:
    def body(case):
        shape, k, stride, padding, _, seed = case
        x = make_array(shape, "c", seed)
        cols = make_array(_cols_truth(x, k, stride, padding).shape, "c", seed + 1)
        example = describe(x=x, kernel=k, stride=stride, padding=padding)
        left = float(np.sum(_cols_truth(x, k, stride, padding) * cols))
        right = float(np.sum(x * call(mod.col2im, cols, shape, k, stride, padding, example=example)))
        if not np.isclose(left, right, rtol=1e-9, atol=1e-12):
            raise MismatchError(
                f"<im2col(x), c> = {left:.6g} but <x, col2im(c)> = {right:.6g}", example,
                ("a pixel inside k overlapping windows must collect all k contributions",),
            )

    for_examples(conv_cases(overlapping=True), body)


def _invoke_im2col(mod: ModuleType, case):
    case, dtype = case
    shape, k, stride, padding, layout, seed = case
    x = make_array(shape, layout, seed, dtype)
    cols = make_array(_cols_truth(x, k, stride, padding).shape, "c", seed + 1, dtype)

    def both(x, cols):
        return mod.im2col(x, k, stride, padding), mod.col2im(cols, shape, k, stride, padding)

    return both, (x, cols), describe(x=x, kernel=k, stride=stride,
                                     padding=padding) + f", {np.dtype(dtype)}", dtype


EX09 = Exercise(
    "ex09", "05", "im2col and col2im", "ex09_im2col.py",
    (
        Property("im2col equals the library's, rows (n, oh, ow) and columns (c, i, j)", _check_im2col,
                 "pad first, then copy xpad[n, c, oh*s : oh*s + k, ow*s : ow*s + k] into row (n, oh, ow); "
                 "the columns run over c, then i, then j"),
        Property("col2im is the transpose of im2col: sum(im2col(x) * c) = sum(x * col2im(c)), "
                 "windows overlapping", _check_transpose,
                 "col2im must add (+=) each row onto its pixels, never overwrite: overlapping windows "
                 "share pixels"),
        Property("col2im equals the library's (adds overlaps, drops the padding)", _check_col2im,
                 "add into a padded image, then cut the padding off"),
        keeps_dtype(st.tuples(conv_cases(), DTYPES), _invoke_im2col, named_outputs("im2col(x)",
                                                                                   "col2im(cols)")),
        inputs_unchanged(st.tuples(conv_cases(), DTYPES), _invoke_im2col, "x, cols"),
        float32_accurate(conv_cases(), _invoke_im2col, named_outputs("im2col(x)", "col2im(cols)"),
                         "ex09_im2col.py",
                         size=lambda args: args[1].shape[1] // args[0].shape[1],  # k * k windows
                         scale=magnitudes()),
    ),
)

# ---- ex10: max-pool backward with ties -------------------------------------------------------------


@st.composite
def pool_cases(draw):
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    side = st.integers(k, 5)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(side), draw(side))
    return shape, k, stride, draw(st.sampled_from(LAYOUTS)), draw(SEEDS)


def _pool_case(case):
    shape, k, stride, layout, seed = case
    # Values from {0, 1, 2}: windows are full of ties, the case the tie rule is about.
    x = np.floor(make_array(shape, layout, seed, low=0.0, high=3.0))
    out, index = pool_reference.max_pool2d_forward(x, (k, k), (stride, stride), (0, 0), (1, 1))
    grad = make_array(out.shape, "c", seed + 1, low=0.5, high=2.0)
    dx = pool_reference.max_pool2d_backward(grad, index, x.shape)
    return x, grad, k, stride, dx, describe(x=x, kernel=k, stride=stride) + f", x = {x.tolist()}"


def _check_pool_reference(mod: ModuleType) -> None:
    def body(case):
        x, grad, k, stride, dx, example = _pool_case(case)
        compare("dx", dx, call(mod.max_pool2d_backward, grad, x, k, stride, example=example), example)

    for_examples(pool_cases(), body)


def _check_pool_conserves(mod: ModuleType) -> None:
    def body(case):
        x, grad, k, stride, _, example = _pool_case(case)
        got = np.asarray(call(mod.max_pool2d_backward, grad, x, k, stride, example=example))
        if not np.isclose(got.sum(), grad.sum(), rtol=1e-9):
            raise MismatchError(
                f"dx sums to {got.sum():.6g} but the output gradient sums to {grad.sum():.6g}", example,
                ("each output's gradient must reach exactly one input element, even when the maximum "
                 "is tied",),
            )

    for_examples(pool_cases(), body)


def _invoke_pool(mod: ModuleType, case):
    case, dtype = case
    x, grad, k, stride, _, example = _pool_case(case)
    fn = lambda g, a: mod.max_pool2d_backward(g, a, k, stride)  # noqa: E731
    return fn, (grad.astype(dtype), x.astype(dtype)), example + f", {np.dtype(dtype)}", dtype


EX10 = Exercise(
    "ex10", "05", "max-pool backward with ties", "ex10_max_pool_backward.py",
    (
        Property("every output's gradient reaches exactly one input (total conserved, ties included)",
                 _check_pool_conserves,
                 "a tie goes to the first maximum in window order only (np.argmax does this), not to "
                 "every element equal to the maximum; and add (+=) when windows overlap, never overwrite"),
        Property("dx equals the reference (first maximum wins; overlapping windows add up)",
                 _check_pool_reference,
                 "a tie goes to the first maximum in window order, row by row then left to right "
                 "(np.argmax of "
                 "the window in C order); when stride < kernel one element can win several windows: add "
                 "(+=) their gradients"),
        keeps_dtype(st.tuples(pool_cases(), DTYPES), _invoke_pool, named_outputs("dx")),
        inputs_unchanged(st.tuples(pool_cases(), DTYPES), _invoke_pool, "grad, x"),
        # dx sums the gradients of the windows an input wins (linear in grad; x only picks the winner).
        float32_accurate(pool_cases(), _invoke_pool, named_outputs("dx"), "ex10_max_pool_backward.py",
                         size=lambda args: args[0].size, scale=magnitudes(0)),
    ),
)

# ---- ex11: batch-norm backward --------------------------------------------------------------------

# M = N * H * W >= 4 values per channel, also after shrinking: with M = 2 both values sit
# at +-1 after normalising and eps alone decides the expected dx (2e-5, meaningless to a
# learner). Scale 1e-3 gives variances of 1e-6, below eps = 1e-5: an eps in the wrong place
# (added to the standard deviation, or left out) changes dx there.
bn_cases = st.tuples(st.integers(2, 3), st.integers(1, 3), st.integers(2, 3), st.integers(1, 3),
                     st.sampled_from(LAYOUTS), SEEDS, st.sampled_from([1.0, 1e-3]), st.sampled_from([1e-5,
                                                                                                     1e-3]))
EPS = 1e-5


def _bn_case(case):
    n, c, h, w, layout, seed, scale = case[:7]
    x = scale * make_array((n, c, h, w), layout, seed)
    dy = make_array(x.shape, layout, seed + 1)
    gamma = make_array((c,), "c", seed + 2, low=0.5, high=2.0)
    return x, dy, gamma, describe(x=x, dy=dy) + (f", x of scale {scale:g}" if scale != 1 else "")


def _bn_truth(x, dy, gamma, eps=EPS):
    rows = x.reshape(x.shape[0], x.shape[1], -1)
    _, mean, _, inv_std = batchnorm_reference.train_forward(rows, gamma, np.zeros_like(gamma), eps)
    dx, dgamma, dbeta = batchnorm_reference.batch_norm_backward(
        dy.reshape(rows.shape), rows, mean, inv_std, gamma, True
    )
    return dx.reshape(x.shape), dgamma, dbeta, (x - mean.reshape(1, -1, 1, 1)) * inv_std.reshape(1, -1, 1, 1)


def _check_bn_params(mod: ModuleType) -> None:
    def body(case):
        x, dy, gamma, example = _bn_case(case)
        _, dgamma, dbeta, _ = _bn_truth(x, dy, gamma)
        got = call(mod.batchnorm_backward, dy, x, gamma, EPS, example=example)
        compare("dgamma", dgamma, got[1], example)
        compare("dbeta", dbeta, got[2], example)

    for_examples(bn_cases, body)


def _check_bn_channel_sums(mod: ModuleType, weight_by_xhat: bool) -> None:
    def body(case):
        x, dy, gamma, example = _bn_case(case)
        example += ", eps 0"  # with eps = 0 both sums are exactly 0; eps > 0 perturbs the second
        xhat = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
        dx = np.asarray(call(mod.batchnorm_backward, dy, x, gamma, 0.0, example=example)[0])
        if dx.shape != x.shape:
            raise MismatchError(f"dx has shape {dx.shape}, expected {x.shape}", example)
        sums = (dx * xhat if weight_by_xhat else dx).sum(axis=(0, 2, 3))
        # The size of the terms that should cancel: gamma / std * sum |dy|, per channel.
        scale = gamma / x.std(axis=(0, 2, 3)) * np.abs(dy).sum(axis=(0, 2, 3))
        worst = int(np.argmax(np.abs(sums) / scale))
        if abs(sums[worst]) > 1e-8 * scale[worst]:
            what = "sum of dx * xhat" if weight_by_xhat else "sum of dx"
            raise MismatchError(f"channel {worst}: the {what} is {sums[worst]:.3g}, not 0", example)

    for_examples(bn_cases, body)


def _check_bn_dx(mod: ModuleType) -> None:
    def body(case):
        x, dy, gamma, example = _bn_case(case)
        eps = case[-1]
        example += f", eps {eps:g}"
        dx = _bn_truth(x, dy, gamma, eps)[0]
        got = call(mod.batchnorm_backward, dy, x, gamma, eps, example=example)[0]
        try:
            compare("dx", dx, got, example)
        except MismatchError as m:
            per = gamma.reshape(1, -1, 1, 1)
            for factor, words in ((1 / per, "without"), (per, "twice with")):
                if np.shape(got) == dx.shape and np.allclose(got, dx * factor, rtol=1e-6, atol=1e-12):
                    raise MismatchError(m.what, m.example, m.details,
                                        hint=f"dx is right {words} the factor gamma of each channel: "
                                        "y = gamma xhat + beta, so dx carries gamma / sqrt(var + eps) once",
                                        decisive=True) from None
            raise

    for_examples(bn_cases, body)


def _invoke_bn(mod: ModuleType, case):
    case, dtype = case
    x, dy, gamma, example = _bn_case(case)
    fn = lambda dy, x, gamma: mod.batchnorm_backward(dy, x, gamma, case[-1])  # noqa: E731
    args = (dy.astype(dtype), x.astype(dtype), gamma.astype(dtype))
    return fn, args, example + f", {np.dtype(dtype)}", dtype


# For float32 accuracy: channels whose mean lies 1e3 of their spread away from 0 as well, where
# x - mean cancels. Two-pass (mean, then the mean of (x - mean)^2) loses about kappa * u there;
# one pass, E[x^2] - E[x]^2, about kappa^2 * u, a thousand times more.
bn_offset_cases = st.tuples(bn_cases, st.sampled_from([0.0, 1e3]))


def _invoke_bn_offset(mod: ModuleType, case):
    (base, offset), dtype = case
    fn, (dy, x, gamma), example, dtype = _invoke_bn(mod, (base, dtype))
    x = (x + np.asarray(offset * base[6], dtype)).astype(dtype)
    where = f", each channel's mean {offset:g} times its spread" if offset else ""
    return fn, (dy, x, gamma), example + where, dtype


def _bn_scales(run, args, case) -> dict:
    """The scale of batch norm's float32 error. kappa = 1 + max|x| / sqrt(var + eps) per channel is
    its conditioning: x - mean is known to u * max|x|, which is kappa * u in units of the spread."""
    dy, x, gamma = args
    axes = (0, 2, 3)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + case[0][-1])  # case's eps
    xhat = (x - x.mean(axis=axes, keepdims=True)) * inv_std
    kappa = 1 + np.abs(x).max(axis=axes, keepdims=True) * inv_std
    per = gamma.reshape(1, -1, 1, 1) * inv_std
    dx = kappa * per * (np.abs(dy) + np.abs(dy).mean(axis=axes, keepdims=True)
                        + np.abs(xhat) * np.abs(dy * xhat).mean(axis=axes, keepdims=True))
    return {"dx": dx, "dgamma": (kappa * np.abs(dy) * (1 + np.abs(xhat))).sum(axis=axes),
            "dbeta": np.abs(dy).sum(axis=axes)}


EX11 = Exercise(
    "ex11", "06", "batch-norm backward (compact form)", "ex11_batchnorm_backward.py",
    (
        Property("dgamma = sum(dy * xhat) and dbeta = sum(dy), per channel", _check_bn_params,
                 "dgamma = sum(dy * xhat), with xhat the normalised x (not x), and dbeta = sum(dy), over the "
                 "batch and both spatial axes (0, 2, 3), one value per channel", key="params"),
        Property("dx sums to zero over each channel (the mean's path)",
                 lambda mod: _check_bn_channel_sums(mod, weight_by_xhat=False),
                 "the mean depends on every x of the channel: its path adds a term -sum(dy) / M",
                 key="mean path"),
        Property("dx * xhat sums to zero over each channel (the variance's path)",
                 lambda mod: _check_bn_channel_sums(mod, weight_by_xhat=True),
                 "the variance depends on every x too: its path adds a term in xhat * sum(dy * xhat)",
                 key="variance path"),
        Property("dx equals the reference backward, variances below eps and eps 1e-3 included", _check_bn_dx,
                 "collect the three paths (direct, through the mean, through the variance) with the "
                 "biased variance, and eps inside the square root: sqrt(var + eps)", key="dx"),
        keeps_dtype(st.tuples(bn_cases, DTYPES), _invoke_bn, named_outputs("dx", "dgamma", "dbeta")),
        inputs_unchanged(st.tuples(bn_cases, DTYPES), _invoke_bn, "dy, x, gamma"),
        float32_accurate(bn_offset_cases, _invoke_bn_offset, named_outputs("dx", "dgamma", "dbeta"),
                         "ex11_batchnorm_backward.py", size=lambda args: args[1][:, 0].size,  # M = N H W
                         scale=_bn_scales),
    ),
    causes=(
        cause("params", "variance path", "dx", text="xhat is off by a constant factor: the batch variance is "
              "the biased one, the mean of (x - mean)^2 over M values (np.var's default, ddof=0), "
              "not / (M - 1)"),
        cause("mean path", "variance path", "dx", text="M counts every value of a channel, N * H * "
                                                       "W (not N): "
              "both the mean's and the variance's paths divide by it"),
        cause("mean path", "dx", text="the mean's path is missing: the batch mean depends on every x of the "
              "channel, which adds - sum(dy) / M to dx / (gamma / sqrt(var + eps))"),
        cause("variance path", "dx",
              text="the variance's path is missing: the batch variance depends on every "
              "x too, which adds - xhat * sum(dy * xhat) / M"),
        cause("params", "dx", text="eps is in the wrong place: it belongs inside the square root, "
              "1 / sqrt(var + eps), in xhat as in dx; the difference shows where the variance is below eps"),
        cause("float32 accuracy", text="float32 precision lost, though float64 is right: the variance as "
              "E[x^2] - E[x]^2 cancels when a channel's mean is large against its spread (in float32 it can "
              "even come out negative); subtract the mean first, var = mean((x - mean)^2), as x.var() does"),
        cause("dx", text="the paths are right but eps is not: it belongs inside the square root, "
              "1 / sqrt(var + eps); the difference shows where the variance is below eps"),
    ),
)


# ---- ex17: dL/dx of a strided convolution, as a convolution ------------------------------------


@st.composite
def strided_cases(draw):
    """Strides 1 to 3 over sizes the stride need not divide (the rows no window reads)."""
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k - 1))
    low = max(1, k - 2 * padding)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(low, 7)),
             draw(st.integers(low, 7)))
    return shape, k, stride, padding, draw(SEEDS)


def _strided_case(case, dtype=np.float64):
    shape, k, stride, padding, seed = case
    w = make_array((2, shape[1], k, k), "c", seed + 1, dtype)
    x = make_array(shape, "c", seed, dtype)
    y = conv_reference.conv2d_forward(x, w, np.zeros(2, dtype), **_pairs(k, stride, padding))
    grad = make_array(y.shape, "c", seed + 3, dtype)
    dx = conv_reference.conv2d_backward(grad, x, w, **_pairs(k, stride, padding))[0]
    rest = (shape[2] + 2 * padding - k) % stride
    example = (describe(grad=grad, w=w, x_shape=shape, stride=stride, padding=padding)
               + (f" ({rest} input row(s) read by no window)" if rest else ""))
    return grad, w, shape, stride, padding, dx, example


def _check_input_gradient(mod: ModuleType, what: str) -> None:
    def body(case):
        grad, w, shape, stride, padding, dx, example = _strided_case(case)
        got = np.asarray(call(mod.conv2d_input_gradient, grad, w, shape, stride, padding, example=example))
        if what == "shape":
            if got.shape != tuple(shape):
                raise MismatchError(f"dx has shape {got.shape}, expected x's {tuple(shape)}", example)
            return
        if got.shape == tuple(shape):
            compare("dx", dx, got, example)

    for_examples(strided_cases(), body)


def _invoke_input_gradient(mod: ModuleType, case):
    case, dtype = case
    grad, w, shape, stride, padding, _, example = _strided_case(case, dtype)
    fn = lambda g, w: mod.conv2d_input_gradient(g, w, shape, stride, padding)  # noqa: E731
    return fn, (grad, w), example + f", {np.dtype(dtype)}", dtype


EX17 = Exercise(
    "ex17", "05", "dL/dx of a strided convolution, as a convolution", "ex17_conv_input_gradient.py",
    (
        Property("dx has x's shape, also when the stride leaves rows no window reads",
                 lambda mod: _check_input_gradient(mod, "shape"),
                 "the rows past the last window got no gradient: pad the bottom and right by "
                 "(H + 2p - k) % s more", key="shape"),
        Property("dx equals the reference backward, strides 1 to 3", lambda mod: _check_input_gradient(mod,
                                                                                                       "values"),
                 "spread dL/dy s apart (s - 1 zeros between), pad by k - 1 - p, and correlate with the "
                 "kernel flipped in both spatial axes, summing over the output channels", key="values"),
        keeps_dtype(st.tuples(strided_cases(), DTYPES), _invoke_input_gradient, named_outputs("dx")),
        inputs_unchanged(st.tuples(strided_cases(), DTYPES), _invoke_input_gradient, "grad, w"),
        float32_accurate(strided_cases(), _invoke_input_gradient, named_outputs("dx"),
                         "ex17_conv_input_gradient.py", size=lambda args: args[1][:, 0].size,
                         scale=magnitudes()),
    ),
    causes=(
        cause("shape", text="the rows and columns no window read are missing: when (H + 2p - k) is not a "
              "multiple of s, pad the spread gradient's bottom and right by the remainder too"),
    ),
)

# ---- ex18: Winograd F(2, 3) from interpolation points ------------------------------------------

POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0)
point_cases = st.tuples(st.lists(st.sampled_from(POINTS), min_size=3, max_size=3, unique=True), SEEDS)


def _winograd_case(case, dtype=np.float64):
    points, seed = case
    rng = np.random.default_rng(seed)
    d, g = rng.standard_normal(4).astype(dtype), rng.standard_normal(3).astype(dtype)
    example = f"points {tuple(points)} and infinity, d {d.round(3).tolist()}, g {g.round(3).tolist()}"
    return tuple(points), d, g, example


def _check_winograd_shapes(mod: ModuleType) -> None:
    def body(case):
        points, _, _, example = _winograd_case(case)
        got = call(mod.winograd_f23, points, example=example)
        for name, matrix, want in zip(("AT", "G", "BT"), got, ((2, 4), (4, 3), (4, 4))):
            if np.shape(matrix) != want:
                raise MismatchError(f"{name} has shape {np.shape(matrix)}, expected {want}", example)

    for_examples(point_cases, body)


def _check_winograd_values(mod: ModuleType) -> None:
    def body(case):
        points, d, g, example = _winograd_case(case)
        transforms = call(mod.winograd_f23, points, example=example)
        if [np.shape(t) for t in transforms] != [(2, 4), (4, 3), (4, 4)]:
            return  # the shapes' property reports it
        at, gm, bt = (np.asarray(t, dtype=np.float64) for t in transforms)
        compare("AT [(G g) * (BT d)]", np.correlate(d, g, "valid"), at @ ((gm @ g) * (bt @ d)), example,
                rtol=1e-9, atol=1e-9)
        compare("correlate_f23(d, g, transforms)", np.correlate(d, g, "valid"),
                call(mod.correlate_f23, d, g, transforms, example=example), example, rtol=1e-9, atol=1e-9)
        # correlate_f23 applies the transforms it is given (any three matrices), not np.correlate.
        rng = np.random.default_rng(len(example))
        other = (rng.standard_normal((2, 4)), rng.standard_normal((4, 3)), rng.standard_normal((4, 4)))
        try:
            compare("correlate_f23 with other transforms", other[0] @ ((other[1] @ g) * (other[2] @ d)),
                    call(mod.correlate_f23, d, g, other, example=example), example + ", random AT, G, BT",
                    rtol=1e-9, atol=1e-9)
        except MismatchError as m:
            raise MismatchError(m.what, m.example, m.details,
                                hint="correlate_f23 must compute AT @ ((G @ g) * (BT @ d)) with the "
                                "transforms passed in: that is what the transforms are tested by") from None

    for_examples(point_cases, body)


def _evaluation_points(gm: np.ndarray) -> list[float] | None:
    """The point each row of G evaluates g(t) = g0 + g1 t + g2 t^2 at (a row proportional to
    [1, p, p^2]; [0, 0, c] is infinity); None if a row is neither."""
    found = []
    for row in gm:
        if abs(row[0]) > 1e-12 * np.abs(row).max():
            point = row[1] / row[0]
            if not np.isclose(row[2] / row[0], point * point, rtol=1e-9, atol=1e-9):
                return None
            found.append(float(point))
        elif abs(row[1]) <= 1e-12 * np.abs(row).max() and row[2] != 0:
            found.append(np.inf)
        else:
            return None
    return found


def _check_winograd_points(mod: ModuleType) -> None:
    def body(case):
        points, _, _, example = _winograd_case(case)
        got = call(mod.winograd_f23, points, example=example)
        if np.shape(got[1]) != (4, 3):
            return  # the shapes' property reports it
        evaluated = _evaluation_points(np.asarray(got[1], dtype=np.float64))
        want = sorted([*points, np.inf])
        if evaluated is None or not np.allclose(sorted(evaluated), want, rtol=1e-9, atol=1e-9):
            finite = sorted(p for p in (evaluated or []) if np.isfinite(p))
            fixed = len(finite) == 3 and not np.allclose(finite, sorted(points))
            rows = evaluated if evaluated else "no single point each"
            hint = ("build the transforms from the points you are given: a fixed set of points gives a "
                    "right answer, but not the one these points define") if fixed else (
                    "each row of G evaluates g(t) = g0 + g1 t + g2 t^2 at one point: three at the points "
                    "given, the last at infinity")
            raise MismatchError("G does not evaluate g at the points given", example,
                                (f"G's rows evaluate g at {rows}",), hint=hint)

    for_examples(point_cases, body)


def _invoke_winograd(mod: ModuleType, case):
    case, dtype = case
    points, d, g, example = _winograd_case(case, dtype)
    fn = lambda d, g: mod.correlate_f23(d, g, mod.winograd_f23(points))  # noqa: E731
    return fn, (d, g), example + f", {np.dtype(dtype)}", dtype


EX18 = Exercise(
    "ex18", "05", "Winograd F(2, 3) transforms from interpolation points", "ex18_winograd_transforms.py",
    (
        Property("AT is (2, 4), G (4, 3), BT (4, 4)", _check_winograd_shapes,
                 "G evaluates g (3 coefficients) at 4 points, BT maps d (4) to 4 values, AT maps 4 products "
                 "to 2 outputs", key="shapes"),
        Property("AT [(G g) * (BT d)] is the correlation of d with g, for any three distinct points",
                 _check_winograd_values,
                 "the correlation y = T^T d is the transpose of the convolution a -> g * a = M^-1 ((G g) * "
                 "(H a)): transpose that product, (M^-1)^T included", key="values"),
        Property("G evaluates g at the points given and at infinity (the transforms come from them)",
                 _check_winograd_points,
                 "each row of G evaluates g(t) = g0 + g1 t + g2 t^2 at one of the points, the last at "
                 "infinity (its leading coefficient)", key="points"),
        keeps_dtype(st.tuples(point_cases, DTYPES), _invoke_winograd, named_outputs("y")),
        inputs_unchanged(st.tuples(point_cases, DTYPES), _invoke_winograd, "d, g"),
    ),
)

EXERCISES = (EX08, EX09, EX10, EX11, EX17, EX18)
