"""The op table: one small, kink-free case per differentiable op, written once for every check.

Each case is ``fn(lib, *inputs)`` with ``lib`` the library (``tinyres``, or ``torch``
for the comparison) and inputs from ``make_inputs(rng)``: float64 arrays become leaves
that require grad, integer arrays (class labels) plain tensors. The table drives

- ``tinyres gradcheck`` and the test suite's finite-difference check (``run_case``);
- the property tests, which draw the seed and the memory layout of the inputs;
- tier agreement: each case under every kernel tier against the ``reference`` tier;
- the PyTorch comparison, for the cases whose ``fn`` runs unchanged on PyTorch.

Every ``Function`` subclass in tinyres appears in some case's graph: a test fails
otherwise (``tests/test_op_table.py``). Cases are seeded, so a failure reproduces.

>>> case = CASES["mul"]
>>> [round(c.relative_error, 6) for c in run_case(case)]
[0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import tinyres
from tinyres.engine import Tensor
from tinyres.models.blocks import SubsamplePad
from tinyres.ops.elementwise import Cast
from tinyres.testing.gradcheck import InputCheck, check_gradients


@dataclass(frozen=True)
class OpCase:
    """An op to check: ``fn(lib, *inputs)`` with inputs built from ``make_inputs(rng)``."""

    name: str
    fn: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator], tuple[np.ndarray, ...]]
    torch: bool = True  # fn runs unchanged with lib=torch


CASES: dict[str, OpCase] = {}


def register(name: str, fn: Callable[..., Any], make_inputs: Callable, torch: bool = True) -> None:
    if name in CASES:
        raise ValueError(f"a gradient check named {name!r} is registered already")
    CASES[name] = OpCase(name, fn, make_inputs, torch)


def case_inputs(case: OpCase, seed: int = 0, layout: str = "C") -> tuple[Tensor, ...]:
    """The case's inputs as tinyres tensors; ``layout="F"`` stores the arrays column-major."""
    arrays = case.make_inputs(np.random.default_rng(seed))
    order = np.asfortranarray if layout == "F" else np.ascontiguousarray
    return tuple(Tensor(order(a), requires_grad=a.dtype.kind == "f") for a in arrays)


def run_case(case: OpCase, seed: int = 0, layout: str = "C") -> list[InputCheck]:
    """Central differences against ``backward`` for every float input of the case."""
    return check_gradients(lambda *xs: case.fn(tinyres, *xs), case_inputs(case, seed, layout), seed=seed)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], margin: float = 0.1):
    """Normal samples pushed at least ``margin`` from 0, the kink of ReLU and |x|."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)


def _normal(*shapes: tuple[int, ...]):
    return lambda rng: tuple(rng.standard_normal(shape) for shape in shapes)


def _one(shape, positive=False, off_kink=False):
    def make(rng):
        if positive:
            return (rng.uniform(0.5, 2.0, shape),)
        if off_kink:
            return (away_from_zero(rng, shape),)
        return (rng.standard_normal(shape),)

    return make


register("add", lambda lib, x, y: x + y, _normal((3, 4), (4,)))
register("sub", lambda lib, x, y: x - y, _normal((2, 1, 3), (4, 1)))
register("mul", lambda lib, x, y: x * y, _normal((3, 4), (3, 1)))
register("div", lambda lib, x, y: x / y, lambda rng: ((rng.standard_normal((3, 4))),
                                                 (rng.uniform(0.5, 2.0, (4,)))))
register("pow", lambda lib, x, y: x**y, lambda rng: ((rng.uniform(0.5, 2.0, (3, 4))),
                                               (rng.uniform(-1.5, 1.5, (3, 4)))))
register("neg", lambda lib, x: -x, _one((3, 4)))
register("matmul", lambda lib, x, y: x @ y, _normal((2, 3, 4), (4, 5)))
register("sum", lambda lib, x: x.sum(dim=1), _one((3, 4, 2)))
register("mean", lambda lib, x: x.mean(dim=(0, 2), keepdim=True), _one((3, 4, 2)))
register("max", lambda lib, x: x.max(dim=1)[0], _one((3, 5)))
register("min", lambda lib, x: x.min(dim=1)[0], _one((3, 5)))
register("exp", lambda lib, x: x.exp(), _one((3, 4)))
register("log", lambda lib, x: x.log(), _one((3, 4), positive=True))
register("sqrt", lambda lib, x: x.sqrt(), _one((3, 4), positive=True))
register("abs", lambda lib, x: x.abs(), _one((3, 4), off_kink=True))
register("relu", lambda lib, x: x.relu(), _one((3, 4), off_kink=True))
register("sigmoid", lambda lib, x: x.sigmoid(), _one((3, 4)))
register("tanh", lambda lib, x: x.tanh(), _one((3, 4)))
register("reshape", lambda lib, x: x.view(4, 3) * 1.5, _one((3, 4)))
register("flatten", lambda lib, x: x.flatten(1), _one((2, 3, 4)))
register("transpose", lambda lib, x: x.transpose(0, 2), _one((2, 3, 4)))
register("permute", lambda lib, x: x.permute(2, 0, 1), _one((2, 3, 4)))
register("index", lambda lib, x: x[1:, ::2], _one((3, 5)))
register("index_array", lambda lib, x: x[lib.tensor([0, 2, 0]), lib.tensor([1, 1, 3])], _one((3, 5)))
register("cat", lambda lib, x, y: lib.cat([x, y], dim=1), _normal((2, 3), (2, 5)))
register("stack", lambda lib, x, y: lib.stack([x, y], dim=1), _normal((2, 3), (2, 3)))
register("clone", lambda lib, x: x.clone(), _one((3, 4)))
# Cast between float dtypes: float64 to float64 through the op itself (``x.to`` skips
# it for the same dtype, and float32 would spoil the finite differences).
register("cast", lambda lib, x: Cast.apply(x, dtype=np.float64), _one((3, 4)), torch=False)




def _off_kinks(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.15 from 0 and from +-0.5, the kinks of the clamp cases below."""
    return rng.choice([-1.3, -0.9, -0.25, 0.2, 0.3, 0.8, 1.4], shape) + rng.uniform(-0.05, 0.05, shape)


def _index_put(lib: Any, x: Any, y: Any) -> Any:
    z = x * 1  # a non-leaf: a leaf that requires grad cannot be written in place
    z[1:, ::2] = y
    return z


register("clamp", lambda lib, x: x.clamp(-0.5, 0.5), lambda rng: (_off_kinks(rng, (3, 4)),))
register("clamp_", lambda lib, x: (x * 1).clamp_(-0.5, 0.5), lambda rng: (_off_kinks(rng, (3, 4)),))
# maximum/minimum of two tensors: values 0.05 apart on a grid, so they never meet at a tie (a kink).
register("maximum", lambda lib, x, y: lib.maximum(x, y),
         lambda rng: (_distinct(rng, (3, 4)), _distinct(rng, (4,)) + 0.05))
register("minimum", lambda lib, x, y: lib.min(y, x),
         lambda rng: (_distinct(rng, (3, 1)), _distinct(rng, (2, 1, 4)) + 0.05))
register("copy_", lambda lib, x, y: (x * 1).copy_(y), _normal((3, 4), (4,)))
register("where", lambda lib, x, y: lib.where(x > 0, x, y), lambda rng: (away_from_zero(rng, (3, 4)),
                                                                        rng.standard_normal((3, 4))))
register("masked_fill", lambda lib, x: x.masked_fill(x > 0, 1.5), lambda rng: (away_from_zero(rng, (3, 4)),))
register("index_put", _index_put, _normal((3, 5), (2, 3)))
register("expand", lambda lib, x: x.expand(2, 3, 4), _one((3, 1)))
register("gather", lambda lib, x: x.gather(1, lib.tensor([[0, 2], [1, 1], [3, 0]])), _one((3, 4)))
register("t", lambda lib, x: x.t(), _one((3, 4)))
register("var", lambda lib, x: x.var(dim=1), _one((3, 4)))
register("std", lambda lib, x: x.std(dim=(0, 2), keepdim=True), _one((3, 4, 2)))


# ---- normalisation, pooling, linear and loss (tinyres.nn.functional) ----------------
def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.1 apart, so no max-pool window has a near-tie (a kink)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


def _bn_eval(lib: Any, x: Any, w: Any, b: Any) -> Any:
    stats = np.random.default_rng(1)
    mean, var = stats.standard_normal(3), stats.uniform(0.5, 2.0, 3)
    mean, var = lib.tensor(mean, dtype=x.dtype), lib.tensor(var, dtype=x.dtype)
    return lib.nn.functional.batch_norm(x, mean, var, w, b, training=False)


def _bn_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    # Uniform, not standard_normal: an upstream gradient v equal to x would make batch
    # norm's dx vanish (it is scale-invariant).
    return rng.uniform(-2, 2, (3, 3, 2, 2)), rng.uniform(0.5, 2, 3), rng.uniform(-1, 1, 3)


def _functional(name: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """``lib.nn.functional.<name>(*inputs, *args, **kwargs)``, for tinyres and PyTorch alike."""
    return lambda lib, *inputs: getattr(lib.nn.functional, name)(*inputs, *args, **kwargs)


register("batch_norm_train",
         lambda lib, x, w, b: lib.nn.functional.batch_norm(x, None, None, w, b, training=True), _bn_inputs)
register("batch_norm_train_no_affine", _functional("batch_norm", None, None, training=True),
         lambda rng: (rng.uniform(-2, 2, (4, 2, 3)),))
register("batch_norm_eval", _bn_eval, _bn_inputs)


def _channels_last(x: Any) -> Any:
    """x's values in channels-last memory, the layout a convolution hands batch norm (and
    the one the compiled fused kernels are written for)."""
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


_EVAL_STATS = np.random.default_rng(1)
_EVAL_MEAN, _EVAL_VAR = _EVAL_STATS.standard_normal(3), _EVAL_STATS.uniform(0.5, 2.0, 3)


def _bn_relu(training: bool, residual: bool) -> Callable[..., Any]:
    """relu(batch_norm(x) [+ r]) on channels-last x: tinyres's fused op, PyTorch's pieces."""

    def fn(lib: Any, x: Any, w: Any, b: Any, *r: Any) -> Any:
        x = _channels_last(x)
        stats = (None, None)
        if not training:
            stats = tuple(lib.tensor(a, dtype=x.dtype) for a in (_EVAL_MEAN, _EVAL_VAR))
        if lib.__name__ == "torch":
            y = lib.nn.functional.batch_norm(x, *stats, w, b, training=training)
            return lib.relu(y + r[0] if residual else y)
        from tinyres.ops.norm import batch_norm_relu

        return batch_norm_relu(x, *stats, w, b, training=training, residual=r[0] if residual else None)

    return fn


def _bn_relu_inputs(training: bool, residual: bool) -> Callable[[np.random.Generator], tuple]:
    """x, gamma, beta (and a residual) whose pre-ReLU values all stay 0.1 from ReLU's kink."""

    def make(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        while True:
            x, w, b = _bn_inputs(rng)
            r = rng.uniform(-1, 1, x.shape)
            mean, var = _EVAL_MEAN, _EVAL_VAR
            if training:
                mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
            per_channel = [a[:, None, None] for a in (mean, var, w, b)]
            y = (x - per_channel[0]) / np.sqrt(per_channel[1] + 1e-5) * per_channel[2] + per_channel[3]
            y = y + r if residual else y
            if np.abs(y).min() > 0.1 and (y > 0).any():
                return (x, w, b, r) if residual else (x, w, b)

    return make


for _training, _residual, _name in ((True, False, "batch_norm_relu_train"),
                                    (False, False, "batch_norm_relu_eval"),
                                    (True, True, "batch_norm_add_relu_train")):
    register(_name, _bn_relu(_training, _residual), _bn_relu_inputs(_training, _residual))


def _sync_batch_norm(lib: Any, x: Any, w: Any, b: Any) -> Any:
    """SyncBatchNorm's op in one process: batch norm over the batch (PyTorch refuses it on the CPU)."""
    if lib.__name__ == "torch":
        return lib.nn.functional.batch_norm(x, None, None, w, b, training=True)
    from tinyres.nn.sync_batchnorm import SyncBatchNormFunction

    return SyncBatchNormFunction.apply(x, w, b, running_mean=None, running_var=None, momentum=0.1, eps=1e-5)


register("sync_batch_norm", _sync_batch_norm, _bn_inputs)
register("max_pool2d", _functional("max_pool2d", 3, stride=2, padding=1),
         lambda rng: (_distinct(rng, (2, 2, 5, 5)),))
register("max_pool2d_dilated", _functional("max_pool2d", (2, 3), stride=1, padding=(1, 1), dilation=(2, 1)),
         lambda rng: (_distinct(rng, (1, 2, 4, 5)),))
register("avg_pool2d", _functional("avg_pool2d", 3, stride=2, padding=1), _one((2, 2, 5, 5)))
register("adaptive_avg_pool2d", _functional("adaptive_avg_pool2d", (2, 3)), _one((2, 2, 5, 4)))
register("linear", _functional("linear"), _normal((3, 4), (5, 4), (5,)))
register("leaky_relu", _functional("leaky_relu", 0.2), _one((3, 4), off_kink=True))
register("silu", _functional("silu"), _one((3, 4)))
register("log_softmax", _functional("log_softmax", dim=1), _one((3, 5)))
register("softmax", _functional("softmax", dim=0), _one((3, 5)))
register("topk", lambda lib, x: x.topk(2, dim=1)[0], lambda rng: (_distinct(rng, (3, 5)),))
register("sort", lambda lib, x: x.sort(dim=0, descending=True)[0], lambda rng: (_distinct(rng, (3, 5)),))
register("group_norm", lambda lib, x, w, b: lib.nn.functional.group_norm(x, 3, w, b), _bn_inputs)
register("layer_norm", _functional("layer_norm", (2, 2)), lambda rng: (rng.uniform(-2, 2, (3, 3, 2, 2)),))
register("pad_constant", _functional("pad", (1, 2, -1, 1), value=0.5), _one((2, 3, 4)))
register("pad_reflect", _functional("pad", (2, 1, 1, 2), mode="reflect"), _one((2, 3, 4)))
register("pad_replicate", _functional("pad", (2, -1, 3, 0), mode="replicate"), _one((2, 3, 4)))
register("pad_circular", _functional("pad", (1, 2), mode="circular"), _one((2, 3, 4)))
register("nll_loss", _functional("nll_loss"), lambda rng: (rng.standard_normal((3, 5)), np.array([0, 4, 2])))
register("mse_loss", _functional("mse_loss"), _normal((3, 4), (3, 4)))
register("cross_entropy", _functional("cross_entropy"), lambda rng: (rng.standard_normal((3, 5)),
                                                                     np.array([0, 4, 2])))

# ---- convolution (tinyres.nn.functional.conv2d) ---------------------------------------
register("conv2d", _functional("conv2d", stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
         _normal((2, 3, 5, 4), (2, 3, 3, 2), (2,)))
register("conv2d_1x1_strided", _functional("conv2d", stride=2), _normal((2, 3, 5, 5), (4, 3, 1, 1)))
# The ResNets' other layer kinds: a 3x3 layer with more than one block of 16 output channels,
# a 1x1 layer, and the 7x7 stride-2 stem on 3 channels.
register("conv2d_3x3", _functional("conv2d", padding=1), _normal((2, 4, 4, 5), (17, 4, 3, 3)))
register("conv2d_1x1", _functional("conv2d"), _normal((2, 5, 3, 3), (3, 5, 1, 1), (3,)))
register("conv2d_stem", _functional("conv2d", stride=2, padding=3), _normal((1, 3, 8, 7), (4, 3, 7, 7)))
register("unfold", _functional("unfold", (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)),
         _one((2, 2, 4, 5)))
register("conv2d_unbatched", _functional("conv2d", padding=1), _normal((2, 4, 3), (3, 2, 3, 3), (3,)))
register("conv2d_grouped", _functional("conv2d", stride=2, padding=1, groups=2),
         _normal((2, 4, 5, 5), (6, 2, 3, 3), (6,)))
register("conv2d_depthwise", _functional("conv2d", padding=1, groups=3), _normal((2, 3, 4, 4), (3, 1, 3, 3)))

# ---- a custom op in PyTorch's protocol (tinyres.autograd.Function) ------------------------
def _custom_mul(lib: Any, x: Any, y: Any) -> Any:
    """x * y written as a user writes a custom op, for tinyres and PyTorch alike; y
    broadcasts, so the gradient backward returns for it is summed to its shape."""

    class Mul(lib.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: Any, b: Any) -> Any:
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            a, b = ctx.saved_tensors
            return grad * b, grad * a

    return Mul.apply(x, y)


register("autograd_function", _custom_mul, _normal((3, 4), (4,)))

# ---- models: option A's shortcut (tinyres.models.blocks) ------------------------------
register("subsample_pad", lambda lib, x: SubsamplePad.apply(x, stride=2, out_channels=5), _one((2, 3, 5, 4)),
         torch=False)
