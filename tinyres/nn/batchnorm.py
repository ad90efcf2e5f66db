r"""``BatchNorm2d``: normalise each channel over the batch, then scale and shift.

In training mode each channel c of an (N, C, H, W) batch is normalised with the
batch's own statistics over the N*H*W values,

.. math::  y = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}\,\gamma + \beta,

and the running estimates used at evaluation time move towards them:
``running = (1 - momentum) * running + momentum * batch``, where the running
variance takes the *unbiased* batch variance (divided by N*H*W - 1) while the
normalisation above uses the biased one, exactly as PyTorch. ``momentum=None``
gives a plain average over all batches seen. ``num_batches_tracked`` counts the
training batches. In eval mode the running statistics replace the batch's, so a
single image gives the same answer alone or in a batch.

>>> import tinyres as tr
>>> from tinyres import nn
>>> bn = nn.BatchNorm2d(3)
>>> bn
BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
>>> list(bn.state_dict())
['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
>>> y = bn(tr.randn(4, 3, 2, 2))
>>> int(bn.num_batches_tracked.item())
1
"""

from __future__ import annotations

import numpy as np

from tinyres.engine import Tensor
from tinyres.nn import functional as F
from tinyres.nn import init
from tinyres.nn.module import Module
from tinyres.nn.parameter import Parameter


class BatchNorm2d(Module):
    """Batch normalisation over the channels of an (N, C, H, W) input.

    ``affine=False`` drops the learnable weight (gamma) and bias (beta); the
    keyword-only ``bias=False`` drops only beta (PyTorch 2.13's option);
    ``track_running_stats=False`` keeps no running statistics, so batch
    statistics are used in eval mode too.
    """

    # Checkpoints saved before PyTorch 0.4.1 have no num_batches_tracked, and
    # PyTorch loads them anyway; so do we (the counter keeps its value).
    _optional_state = ("num_batches_tracked",)

    input_ndims, layout = (4,), "4D input (N, C, H, W)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
    ):
        super().__init__()
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be a positive int, got {num_features!r}")
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = Parameter(np.zeros(self.num_features, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(self.num_features, dtype=np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(self.num_features, dtype=np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.batch_norm(input, *self.functional_arguments(input))

    def functional_arguments(self, input: Tensor) -> tuple:
        """``F.batch_norm``'s arguments after the input, for this call (counting the batch
        in ``num_batches_tracked`` when training): what ``forward`` runs, and what
        ``tinyres.nn.fusion`` hands the fused batch norm + ReLU."""
        if input.ndim not in self.input_ndims:
            raise ValueError(f"{type(self).__name__}: expected {self.layout}, got {input.ndim}D input "
                             f"of shape {input.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked._data[...] += 1
            if self.momentum is None:  # cumulative average: the n-th batch weighs 1/n
                factor = 1.0 / float(self.num_batches_tracked.item())
        # Batch statistics in training, and in eval when there are no running ones.
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return (
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(BatchNorm2d):
    """Batch norm of (N, C) features or (N, C, L) sequences: statistics per channel C
    over the batch (and L), with the same parameters, buffers and modes as ``BatchNorm2d``."""

    input_ndims, layout = (2, 3), "2D or 3D input (N, C) or (N, C, L)"
