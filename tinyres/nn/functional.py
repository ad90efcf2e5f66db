"""The functional forms of the layers, as in ``torch.nn.functional``.

Each function validates its inputs (naming what was expected and what came) and
then applies a ``Function`` from ``tinyres.ops``, whose kernels live in
``tinyres.kernels``.
"""

from tinyres.ops import relu
from tinyres.ops.conv import conv2d
from tinyres.ops.elementwise import leaky_relu
from tinyres.ops.linear import linear
from tinyres.ops.loss import cross_entropy, log_softmax
from tinyres.ops.norm import batch_norm
from tinyres.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from tinyres.ops.unfold import unfold

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "cross_entropy",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool2d",
    "relu",
    "unfold",
]
