"""The registry of gradient checks: one small, kink-free case per differentiable op.

``tinyres gradcheck`` runs them all and prints a table; the test suite runs them too.
Each case builds float64 inputs from a seeded generator, so a failure reproduces.
Every differentiable op of the library has a case here, grouped by family.

>>> case = CASES["mul"]
>>> [round(c.relative_error, 6) for c in run_case(case)]
[0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinyres.engine import Tensor
from tinyres.gradcheck import InputCheck, check_gradients
from tinyres.models.blocks import SubsamplePad
from tinyres.nn import functional as F
from tinyres.ops import cat, clamp, masked_fill, stack, where


@dataclass(frozen=True)
class OpCase:
    """An op to check: ``fn(*inputs)`` with inputs made by ``make_inputs(rng)``."""

    name: str
    fn: Callable[..., Tensor]
    make_inputs: Callable[[np.random.Generator], tuple[Tensor, ...]]


CASES: dict[str, OpCase] = {}


def register(name: str, fn: Callable[..., Tensor], make_inputs: Callable) -> None:
    if name in CASES:
        raise ValueError(f"a gradient check named {name!r} is registered already")
    CASES[name] = OpCase(name, fn, make_inputs)


def run_case(case: OpCase, seed: int = 0) -> list[InputCheck]:
    return check_gradients(case.fn, case.make_inputs(np.random.default_rng(seed)), seed=seed)


def leaf(array: np.ndarray) -> Tensor:
    """A float64 leaf that requires grad."""
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], margin: float = 0.1):
    """Normal samples pushed at least ``margin`` from 0, the kink of ReLU and |x|."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)


def _off(rng: np.random.Generator, shape: tuple[int, ...], kinks: tuple[float, ...]) -> np.ndarray:
    """Uniform samples at least 0.1 from each of ``kinks`` (clamp's bounds, say)."""
    x = rng.uniform(-1.5, 1.5, shape)
    for k in kinks:
        x = np.where(np.abs(x - k) < 0.1, k + 0.1 * np.sign(x - k + 1e-12), x)
    return x


def _pair(shape_x, shape_y):
    return lambda rng: (leaf(rng.standard_normal(shape_x)), leaf(rng.standard_normal(shape_y)))


def _one(shape, positive=False, off_kink=False):
    def make(rng):
        if positive:
            return (leaf(rng.uniform(0.5, 2.0, shape)),)
        if off_kink:
            return (leaf(away_from_zero(rng, shape)),)
        return (leaf(rng.standard_normal(shape)),)

    return make


register("add", lambda x, y: x + y, _pair((3, 4), (4,)))
register("sub", lambda x, y: x - y, _pair((2, 1, 3), (4, 1)))
register("mul", lambda x, y: x * y, _pair((3, 4), (3, 1)))
register("div", lambda x, y: x / y, lambda rng: (leaf(rng.standard_normal((3, 4))),
                                                 leaf(rng.uniform(0.5, 2.0, (4,)))))
register("pow", lambda x, y: x**y, lambda rng: (leaf(rng.uniform(0.5, 2.0, (3, 4))),
                                               leaf(rng.uniform(-1.5, 1.5, (3, 4)))))
register("neg", lambda x: -x, _one((3, 4)))
register("matmul", lambda x, y: x @ y, _pair((2, 3, 4), (4, 5)))
register("sum", lambda x: x.sum(dim=1), _one((3, 4, 2)))
register("mean", lambda x: x.mean(dim=(0, 2), keepdim=True), _one((3, 4, 2)))
register("max", lambda x: x.max(dim=1)[0], _one((3, 5)))
register("exp", lambda x: x.exp(), _one((3, 4)))
register("log", lambda x: x.log(), _one((3, 4), positive=True))
register("sqrt", lambda x: x.sqrt(), _one((3, 4), positive=True))
register("abs", lambda x: x.abs(), _one((3, 4), off_kink=True))
register("relu", lambda x: x.relu(), _one((3, 4), off_kink=True))
register("sigmoid", lambda x: x.sigmoid(), _one((3, 4)))
register("tanh", lambda x: x.tanh(), _one((3, 4)))
register("reshape", lambda x: x.view(4, 3) * 1.5, _one((3, 4)))
register("flatten", lambda x: x.flatten(1), _one((2, 3, 4)))
register("transpose", lambda x: x.transpose(0, 2), _one((2, 3, 4)))
register("permute", lambda x: x.permute(2, 0, 1), _one((2, 3, 4)))
register("index", lambda x: x[1:, ::2], _one((3, 5)))
register("index_array", lambda x: x[np.array([0, 2, 0]), np.array([1, 1, 3])], _one((3, 5)))


register("min", lambda x: x.min(dim=0)[0], lambda rng: (leaf(_distinct(rng, (3, 5))),))
register("topk", lambda x: x.topk(2, dim=1)[0], lambda rng: (leaf(_distinct(rng, (3, 5))),))
register("sort", lambda x: x.sort(dim=0, descending=True)[0], lambda rng: (leaf(_distinct(rng, (3, 5))),))
register("var", lambda x: x.var(dim=1), _one((3, 4)))
register("std", lambda x: x.std(dim=(0, 2), keepdim=True), _one((3, 4, 2)))
register("clamp", lambda x: clamp(x, -0.5, 0.5), lambda rng: (leaf(_off(rng, (3, 4), (-0.5, 0.0, 0.5))),))
register("where", lambda x, y: where(x > 0, x, y), lambda rng: (leaf(away_from_zero(rng, (3, 4))),
                                                                 leaf(rng.standard_normal((4,)))))
register("masked_fill", lambda x: masked_fill(x, x > 0, 1.5),
         lambda rng: (leaf(away_from_zero(rng, (3, 4))),))
register("expand", lambda x: x.expand(2, 3, 4) * 1.5, _one((3, 1)))
register("t", lambda x: x.t(), _one((3, 4)))
register("softmax", lambda x: F.softmax(x, dim=0), _one((3, 5)))
register("cat", lambda x, y: cat([x, y], dim=1), _pair((2, 3), (2, 5)))
register("stack", lambda x, y: stack([x, y], dim=1), _pair((2, 3), (2, 3)))


# ---- normalisation, pooling, linear and loss (tinyres.nn.functional) ----------------
def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.1 apart, so no max-pool window has a near-tie (a kink)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


def _bn_eval(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    stats = np.random.default_rng(1)
    mean, var = stats.standard_normal(3), stats.uniform(0.5, 2.0, 3)
    return F.batch_norm(x, mean, var, w, b, training=False)


def _bn_inputs(rng: np.random.Generator) -> tuple[Tensor, ...]:
    # Uniform, not standard_normal: run_case seeds the upstream gradient v with the same
    # seed, and v equal to x makes batch norm's dx vanish (it is scale-invariant).
    x = rng.uniform(-2, 2, (3, 3, 2, 2))
    return leaf(x), leaf(rng.uniform(0.5, 2, 3)), leaf(rng.uniform(-1, 1, 3))


register("batch_norm_train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), _bn_inputs)
register("batch_norm_train_no_affine", lambda x: F.batch_norm(x, None, None, training=True),
         lambda rng: (leaf(rng.uniform(-2, 2, (4, 2, 3))),))
register("batch_norm_eval", _bn_eval, _bn_inputs)
register("max_pool2d", lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
         lambda rng: (leaf(_distinct(rng, (2, 2, 5, 5))),))
register("max_pool2d_dilated", lambda x: F.max_pool2d(x, (2, 3), stride=1, padding=(1, 1), dilation=(2, 1)),
         lambda rng: (leaf(_distinct(rng, (1, 2, 4, 5))),))
register("avg_pool2d", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), _one((2, 2, 5, 5)))
register("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (2, 3)), _one((2, 2, 5, 4)))
register("linear", F.linear, lambda rng: (leaf(rng.standard_normal((3, 4))),
                                          leaf(rng.standard_normal((5, 4))),
                                          leaf(rng.standard_normal(5))))
register("log_softmax", lambda x: F.log_softmax(x, dim=1), _one((3, 5)))
register("group_norm", lambda x, w, b: F.group_norm(x, 3, w, b), _bn_inputs)
register("layer_norm", lambda x: F.layer_norm(x, (2, 2)),
         lambda rng: (leaf(rng.uniform(-2, 2, (3, 3, 2, 2))),))
register("pad_constant", lambda x: F.pad(x, (1, 2, -1, 1), value=0.5), _one((2, 3, 4)))
register("pad_reflect", lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"), _one((2, 3, 4)))
register("pad_replicate", lambda x: F.pad(x, (2, -1, 3, 0), mode="replicate"), _one((2, 3, 4)))
register("pad_circular", lambda x: F.pad(x, (1, 2), mode="circular"), _one((2, 3, 4)))
register("nll_loss", lambda x: F.nll_loss(x, Tensor(np.array([0, 4, 2]))), _one((3, 5)))
register("mse_loss", F.mse_loss, _pair((3, 4), (3, 4)))
register("cross_entropy", lambda x: F.cross_entropy(x, Tensor(np.array([0, 4, 2]))), _one((3, 5)))


# ---- convolution (tinyres.nn.functional.conv2d, default kernel tier) -----------------


def _conv_inputs(x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool = True):
    def make(rng):
        x, w = leaf(rng.standard_normal(x_shape)), leaf(rng.standard_normal(w_shape))
        return (x, w, leaf(rng.standard_normal(w_shape[0]))) if bias else (x, w)

    return make


register("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
         _conv_inputs((2, 3, 5, 4), (2, 3, 3, 2)))
register("conv2d_1x1_strided", lambda x, w: F.conv2d(x, w, stride=2),
         _conv_inputs((2, 3, 5, 5), (4, 3, 1, 1), bias=False))
register("conv2d_grouped", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
         _conv_inputs((2, 4, 5, 5), (6, 2, 3, 3)))
register("conv2d_depthwise", lambda x, w: F.conv2d(x, w, padding=1, groups=3),
         _conv_inputs((2, 3, 4, 4), (3, 1, 3, 3), bias=False))
register("conv2d_unbatched", lambda x, w, b: F.conv2d(x, w, b, padding=1),
         _conv_inputs((2, 4, 3), (3, 2, 3, 3)))


# ---- models: option A's shortcut (tinyres.models.blocks) ------------------------------

register("subsample_pad", lambda x: SubsamplePad.apply(x, stride=2, out_channels=5), _one((2, 3, 5, 4)))
