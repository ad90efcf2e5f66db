r"""``SyncBatchNorm``: batch norm whose statistics are those of the *global* batch, the
union of every rank's shard, so N ranks x B/N examples normalise exactly as one
process with B examples would.

Forward takes two all-reduces per layer: the channel sums and the count give the global
mean :math:`\mu`, then the sums of squared deviations give the (biased) global variance
:math:`\sigma^2` (two passes, as accurate as one process's batch norm). With
:math:`\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}` and M the global count, backward is
one process's formula with its two batch means taken over all ranks:

.. math::  \frac{\partial L}{\partial x} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}
           \Big(g - \tfrac{1}{M}\textstyle\sum_{\text{all}} g
                  - \hat x \, \tfrac{1}{M}\sum_{\text{all}} g\,\hat x\Big),

where each rank's g is the gradient of its own loss; the parameter gradients
:math:`\sum g \hat x` and :math:`\sum g` stay per rank and DistributedDataParallel averages
them with the rest. (PyTorch 2.13 refuses SyncBatchNorm on the CPU; here it is the default
of ``tinyres train`` under mpiexec.) Outside a process group, or in eval mode, it is
``BatchNorm2d``.

>>> from tinyres import nn
>>> net = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
>>> net[1]
SyncBatchNorm(2, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres import distributed as dist
from tinyres.engine import Function, Tensor
from tinyres.nn.batchnorm import BatchNorm1d, BatchNorm2d
from tinyres.nn.module import Module


def _sum_over_ranks(array: np.ndarray) -> None:
    """Sum ``array`` over every rank, in place; a process with no process group is every rank."""
    if dist.is_initialized():
        dist.all_reduce_array(array)


class SyncBatchNormFunction(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta with mean and var over all ranks."""

    saved_inputs = ((), (0,))  # gamma is read by dx; x only through x-hat, which forward keeps

    def forward(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, running_mean: np.ndarray | None,
                running_var: np.ndarray | None, momentum: float, eps: float) -> np.ndarray:
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)
        totals = np.append(x3.sum(axis=(0, 2), dtype=np.float64), x3.shape[0] * x3.shape[2])
        _sum_over_ranks(totals)
        m = totals[-1]
        mean = (totals[:-1] / m).astype(x.dtype)
        centred = x3 - mean[:, None]
        squares = (centred * centred).sum(axis=(0, 2), dtype=np.float64)
        _sum_over_ranks(squares)
        var = (squares / m).astype(x.dtype)
        invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        self.xhat, self.invstd, self.gamma, self.m = centred * invstd[:, None], invstd, gamma, m
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:  # unbiased, over the global count, as one process's
            running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))
        return (self.gamma[:, None] * self.xhat + beta[:, None]).reshape(x.shape)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        g = grad.reshape(self.xhat.shape)
        c, dtype = len(self.gamma), grad.dtype
        # Sums in float64, as the batch-norm kernels accumulate: float32 sums of 10^5 terms lose digits.
        local = np.concatenate([g.sum(axis=(0, 2), dtype=np.float64),
                                (g * self.xhat).sum(axis=(0, 2), dtype=np.float64)])
        dbeta, dgamma = local[:c].astype(dtype), local[c:].astype(dtype)
        _sum_over_ranks(local)
        mean_g, mean_gx = (local[:c] / self.m).astype(dtype), (local[c:] / self.m).astype(dtype)
        dx = (self.gamma * self.invstd)[:, None] * (g - mean_g[:, None] - self.xhat * mean_gx[:, None])
        return dx.reshape(grad.shape).astype(grad.dtype), dgamma, dbeta


class SyncBatchNorm(BatchNorm2d):
    """Batch norm over (N, C), (N, C, L) or (N, C, H, W) inputs with statistics over all ranks."""

    input_ndims, layout = (2, 3, 4), "2D, 3D or 4D input (N, C, ...)"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group: Any = None,
                 *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, bias=bias)

    def forward(self, input: Tensor) -> Tensor:
        synchronise = self.training and dist.is_initialized() and dist.get_world_size() > 1
        if not synchronise or input.ndim not in self.input_ndims:
            return super().forward(input)  # one process's batch norm (and its input checks)
        if self.track_running_stats:
            self.num_batches_tracked._data[...] += 1
        factor = 0.0 if self.momentum is None else self.momentum
        if self.momentum is None and self.track_running_stats:
            factor = 1.0 / float(self.num_batches_tracked.item())
        c = self.num_features
        if input.shape[1] != c:
            raise ValueError(f"SyncBatchNorm: expected {c} channels (axis 1), "
                             f"got input of shape {input.shape}")
        dtype = input.dtype
        weight = self.weight if self.weight is not None else Tensor(np.ones(c, dtype))
        bias = self.bias if self.bias is not None else Tensor(np.zeros(c, dtype))
        track = self.track_running_stats
        return SyncBatchNormFunction.apply(
            input, weight, bias, running_mean=self.running_mean._data if track else None,
            running_var=self.running_var._data if track else None, momentum=factor, eps=self.eps)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """``module`` with every BatchNorm1d/2d replaced by a SyncBatchNorm holding the same
        parameters and buffers (the same tensors, as PyTorch's); returns the new root."""
        if isinstance(module, (BatchNorm1d, BatchNorm2d)) and not isinstance(module, SyncBatchNorm):
            sync = cls(module.num_features, module.eps, module.momentum, module.affine,
                       module.track_running_stats, bias=module.bias is not None)
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                setattr(sync, name, getattr(module, name))  # through the registries, as any attribute
            sync.train(module.training)
            return sync
        for name, child in list(module._modules.items()):
            if child is not None:
                setattr(module, name, cls.convert_sync_batchnorm(child, process_group))
        return module
