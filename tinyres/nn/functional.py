"""The functional forms of the layers, as in ``torch.nn.functional``.

Each function validates its inputs (naming what was expected and what came) and
then applies a ``Function`` from ``tinyres.ops``, whose kernels live in
``tinyres.kernels``.
"""

from tinyres.ops import relu
from tinyres.ops.conv import conv2d

__all__ = ["conv2d", "relu"]
