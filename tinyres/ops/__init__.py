"""The differentiable operations behind ``Tensor``'s methods and operators.

One file per family; each ``Function`` keeps its backward next to its forward.
The convolution, normalisation, pooling and loss ops that a ResNet needs live in
``tinyres.nn.functional`` and their kernels in ``tinyres.kernels``.
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
