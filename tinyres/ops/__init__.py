"""The differentiable operations behind ``Tensor``'s methods and operators.

One file per family; each ``Function`` keeps its backward next to its forward.
The layer ops (``conv.py``, ``norm.py``, ``pool.py``, ``linear.py``, ``loss.py``,
``unfold.py``) are what ``tinyres.nn.functional`` exports; the kernels they pick
are in ``tinyres.kernels``. How the pieces fit: ``docs/architecture.md``.
"""

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
from tinyres.ops.matmul import matmul
from tinyres.ops.reduce import max, mean, sum
from tinyres.ops.shape import (
    cat,
    flatten,
    index,
    permute,
    reshape,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)

__all__ = [
    "abs", "add", "cast", "cat", "clone", "div", "exp", "flatten", "index", "log",
    "matmul", "max", "mean", "mul", "neg", "permute", "pow", "relu", "reshape",
    "sigmoid", "sqrt", "squeeze", "stack", "sub", "sum", "tanh", "transpose", "unsqueeze",
]
