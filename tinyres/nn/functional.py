"""The functional forms of the layers, as in ``torch.nn.functional``.

Each function validates its inputs (naming what was expected and what came) and
then applies a ``Function`` from ``tinyres.ops``, whose kernels live in
``tinyres.kernels``.
"""

from tinyres import ops
from tinyres.engine import Tensor
from tinyres.ops.conv import conv2d
from tinyres.ops.dropout import dropout
from tinyres.ops.elementwise import leaky_relu, silu
from tinyres.ops.linear import linear
from tinyres.ops.loss import cross_entropy, log_softmax, mse_loss, nll_loss, softmax
from tinyres.ops.norm import batch_norm
from tinyres.ops.normalize import group_norm, layer_norm
from tinyres.ops.pad import pad
from tinyres.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from tinyres.ops.unfold import unfold


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(input, 0); with ``inplace=True`` written into ``input``'s memory, as in PyTorch.

    In place is safe for autograd because ReLU's backward reads its output, and the
    version counter makes backward raise if that output is changed again later. A
    view that needs a gradient is the one case done out of place: tinyres does not
    record in-place changes through views.
    """
    if inplace and not (input._is_view and input.requires_grad):
        return input.relu_()
    return ops.relu(input)


def relu_(input: Tensor) -> Tensor:
    """max(input, 0) written into ``input``, which is returned (``torch.nn.functional.relu_``).

    Always in place, as its name promises: on a view that needs a gradient it raises
    (see ``Tensor.relu_``) rather than quietly return a new tensor the caller may ignore.
    """
    return input.relu_()


__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "cross_entropy",
    "dropout",
    "group_norm",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "pad",
    "relu",
    "relu_",
    "silu",
    "softmax",
    "unfold",
]
