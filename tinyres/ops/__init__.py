"""The differentiable operations behind ``Tensor``'s methods and operators.

One file per family; each ``Function`` keeps its backward next to its forward.
The layer ops (``conv.py``, ``norm.py``, ``pool.py``, ``linear.py``, ``loss.py``,
``unfold.py``) are what ``tinyres.nn.functional`` exports; the kernels they pick
are in ``tinyres.kernels``. How the pieces fit: ``docs/architecture.md``.
"""

from tinyres.ops.compare import clamp, eq, ge, gt, le, lt, masked_fill, maximum, minimum, ne, where
from tinyres.ops.elementwise import (
    abs,
    add,
    cast,
    clone,
    div,
    exp,
    log,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    sqrt,
    sub,
    tanh,
)
from tinyres.ops.loss import log_softmax, softmax
from tinyres.ops.matmul import matmul
from tinyres.ops.reduce import argmax, argmin, gather, max, mean, min, sort, std, sum, topk, var
from tinyres.ops.shape import (
    cat,
    expand,
    flatten,
    index,
    permute,
    reshape,
    squeeze,
    stack,
    t,
    transpose,
    unsqueeze,
)

__all__ = [
    "abs", "add", "argmax", "argmin", "cast", "cat", "clamp", "clone", "div", "eq", "exp",
    "expand", "flatten", "gather", "ge", "gt", "index", "le", "log", "log_softmax", "lt", "masked_fill",
    "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "ne", "neg", "permute", "pow", "relu",
    "reshape", "sigmoid", "softmax", "sort", "sqrt", "squeeze", "stack", "std", "sub", "sum", "t", "tanh",
    "topk", "transpose", "unsqueeze", "var", "where",
]
