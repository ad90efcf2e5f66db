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
from tinyres.grading.autograd import SEEDS, gradcheck_or_raise
from tinyres.grading.core import (
    Exercise,
    MismatchError,
    Property,
    call,
    compare,
    describe,
    for_examples,
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


EX08 = Exercise(
    "ex08", "05", "conv2d with loops, forward and backward", "ex08_conv2d_loops.py",
    (
        Property("forward equals the loop reference (shapes, strides, padding, layouts)", _check_conv_forward,
                 "no kernel flip (this is a cross-correlation), h = oh*stride - padding + i, and skip "
                 "pixels outside the input"),
        Property("dx equals the reference backward", _check_conv_dx,
                 "dx[n, c, h, v] += dy[n, o, oh, ow] * w[o, c, i, j] at the same h, v as the forward, "
                 "padding offset included"),
        Property("dw and db equal the reference backward", _check_conv_dw_db,
                 "dw sums x * dy over the batch and the output pixels; db sums dy over batch and pixels"),
        Property("forward and backward together pass a float64 gradient check", _check_conv_gradcheck,
                 "the backward must be exactly the transpose (the vector-Jacobian product) of your forward"),
        Property("forward and backward equal PyTorch's conv2d", _check_conv_torch,
                 "PyTorch computes the same cross-correlation: compare your loops with the reference"),
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


EX10 = Exercise(
    "ex10", "05", "max-pool backward with ties", "ex10_max_pool_backward.py",
    (
        Property("every output's gradient reaches exactly one input (total conserved, ties included)",
                 _check_pool_conserves,
                 "a tie goes to the first maximum in window order only (np.argmax does this), not to "
                 "every element equal to the maximum; and add (+=) when windows overlap, never overwrite"),
        Property("dx equals the reference (first maximum wins; overlapping windows add up)",
                 _check_pool_reference,
                 "when stride < kernel one element can win several windows: add (+=) their gradients"),
    ),
)

# ---- ex11: batch-norm backward --------------------------------------------------------------------

bn_cases = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
                     st.sampled_from(LAYOUTS), SEEDS)
EPS = 1e-5


def _bn_case(case):
    n, c, h, w, layout, seed = case
    if n * h * w == 1:  # one value per channel: the variance is 0 and xhat is 0
        n = 2
    x = make_array((n, c, h, w), layout, seed)
    dy = make_array(x.shape, layout, seed + 1)
    gamma = make_array((c,), "c", seed + 2, low=0.5, high=2.0)
    return x, dy, gamma, describe(x=x, dy=dy)


def _bn_truth(x, dy, gamma):
    rows = x.reshape(x.shape[0], x.shape[1], -1)
    _, mean, _, inv_std = batchnorm_reference.train_forward(rows, gamma, np.zeros_like(gamma), EPS)
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
        dx = _bn_truth(x, dy, gamma)[0]
        compare("dx", dx, call(mod.batchnorm_backward, dy, x, gamma, EPS, example=example)[0], example)

    for_examples(bn_cases, body)


EX11 = Exercise(
    "ex11", "06", "batch-norm backward (compact form)", "ex11_batchnorm_backward.py",
    (
        Property("dgamma = sum(dy * xhat) and dbeta = sum(dy), per channel", _check_bn_params,
                 "sum over the batch and both spatial axes (0, 2, 3), one value per channel"),
        Property("dx sums to zero over each channel (the mean's path)",
                 lambda mod: _check_bn_channel_sums(mod, weight_by_xhat=False),
                 "the mean depends on every x of the channel: subtract sum(dy) (the - sum dy term)"),
        Property("dx * xhat sums to zero over each channel (the variance's path)",
                 lambda mod: _check_bn_channel_sums(mod, weight_by_xhat=True),
                 "the variance depends on every x too: subtract xhat * sum(dy * xhat)"),
        Property("dx equals the reference backward", _check_bn_dx,
                 "dx = gamma / (M sqrt(var + eps)) * (M dy - sum dy - xhat * sum(dy xhat)), with the "
                 "biased variance; the property above that fails names the missing term"),
    ),
)

EXERCISES = (EX08, EX09, EX10, EX11)
