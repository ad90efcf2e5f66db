"""tinyres: residual networks built from scratch on NumPy, with PyTorch's names.

>>> import tinyres as torch
>>> x = torch.tensor([[1.0, -2.0]], requires_grad=True)
>>> y = torch.relu(x).sum()
>>> y.backward()
>>> x.grad
tensor([[1., 0.]], shape=(1, 2), dtype=float32)
"""

from tinyres import kernels, models, nn, optim
from tinyres.creation import (
    arange,
    bool_,
    float32,
    float64,
    from_numpy,
    full,
    int64,
    manual_seed,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from tinyres.engine import Function, Tensor, is_grad_enabled, no_grad
from tinyres.gradcheck import GradcheckError, gradcheck
from tinyres.model_summary import summary
from tinyres.ops import (
    cat,
    exp,
    flatten,
    log,
    matmul,
    relu,
    sigmoid,
    sqrt,
    stack,
    tanh,
)
from tinyres.serialization import load, save
from tinyres.tuning import tune

float = float32
double = float64
long = int64

__version__ = "0.1.0"

__all__ = [
    "Function",
    "GradcheckError",
    "Tensor",
    "arange",
    "bool_",
    "cat",
    "double",
    "exp",
    "flatten",
    "float",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "gradcheck",
    "int64",
    "is_grad_enabled",
    "kernels",
    "load",
    "log",
    "long",
    "manual_seed",
    "matmul",
    "models",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "rand",
    "randint",
    "randn",
    "relu",
    "save",
    "sigmoid",
    "sqrt",
    "stack",
    "summary",
    "tanh",
    "tensor",
    "tune",
    "zeros",
    "zeros_like",
]
