"""tinyres: residual networks built from scratch on NumPy, with PyTorch's names.

>>> import tinyres as torch
>>> x = torch.tensor([[1.0, -2.0]], requires_grad=True)
>>> y = torch.relu(x).sum()
>>> y.backward()
>>> x.grad
tensor([[1., 0.]], shape=(1, 2), dtype=float32)
"""

# First, and nothing at all unless this process is `python -m tinyres` (then the command's signal
# handlers, before the second the imports below take; see tinyres/cli/signals.py).
import tinyres_script
from tinyres import autograd, backends, cuda, distributed, kernels, models, nn, optim, utils
from tinyres import tensor_api as tensor_api  # gives Tensor its operators and methods (see that file)
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
from tinyres.engine import Tensor
from tinyres.grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from tinyres.kernels.threads import get_num_threads, set_num_threads
from tinyres.model_summary import summary
from tinyres.ops import (
    abs,
    argmax,
    argmin,
    cat,
    clamp,
    eq,
    exp,
    flatten,
    gather,
    ge,
    gt,
    le,
    log,
    log_softmax,
    lt,
    masked_fill,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    ne,
    permute,
    relu,
    reshape,
    sigmoid,
    softmax,
    sort,
    sqrt,
    squeeze,
    stack,
    std,
    sum,
    t,
    tanh,
    topk,
    transpose,
    unsqueeze,
    var,
    where,
)
from tinyres.plumbing import Generator, Size, device
from tinyres.serialization import load, save
from tinyres.testing.gradcheck import GradcheckError, gradcheck
from tinyres.tuning import tune

float = float32
double = float64
long = int64
clip = clamp

__version__ = "0.1.0"
del tinyres_script  # imported above for its work under `python -m tinyres`, not a name of the API

# No top-level Function: PyTorch has no torch.Function, and the custom-op protocol users
# write is torch.autograd.Function (tinyres.autograd.Function). The engine's own base, on
# arrays, is tinyres.engine.Function; one name each keeps the two protocols apart.
__all__ = [
    "Generator",
    "GradcheckError",
    "Size",
    "Tensor",
    "abs",
    "arange",
    "argmax",
    "argmin",
    "autograd",
    "backends",
    "bool_",
    "cat",
    "clamp",
    "clip",
    "cuda",
    "device",
    "distributed",
    "double",
    "enable_grad",
    "eq",
    "exp",
    "flatten",
    "float",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "gather",
    "ge",
    "get_num_threads",
    "gradcheck",
    "gt",
    "inference_mode",
    "int64",
    "is_grad_enabled",
    "kernels",
    "le",
    "load",
    "log",
    "log_softmax",
    "long",
    "lt",
    "manual_seed",
    "masked_fill",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "models",
    "ne",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "permute",
    "rand",
    "randint",
    "randn",
    "relu",
    "reshape",
    "save",
    "set_grad_enabled",
    "set_num_threads",
    "sigmoid",
    "softmax",
    "sort",
    "sqrt",
    "squeeze",
    "stack",
    "std",
    "sum",
    "summary",
    "t",
    "tanh",
    "tensor",
    "topk",
    "transpose",
    "tune",
    "unsqueeze",
    "utils",
    "var",
    "where",
    "zeros",
    "zeros_like",
]
