r"""Data parallelism: ``DistributedDataParallel`` (one model copy per MPI rank) and
``DataParallel`` (PyTorch's single-process wrapper, which on a CPU just runs the module).

Why averaging gradients is exact: with the loss the mean over a batch of B examples split
into N equal shards of B/N,

.. math::  \nabla \frac{1}{B}\sum_{i=1}^{B} \ell_i
           = \frac{1}{N}\sum_{r=1}^{N} \nabla \frac{N}{B}\sum_{i \in \text{shard } r} \ell_i,

the batch's gradient is the mean of the shards' gradients. So each rank runs forward and
backward on its shard, the gradients are averaged by one all-reduce, and every rank takes
the same optimiser step from the same weights (broadcast from rank 0 at construction).

The all-reduce overlaps backward: parameters are grouped into buckets (in reverse order of
``parameters()``, roughly the order backward completes them, as PyTorch does), and a
bucket's all-reduce starts, non-blocking, as soon as the post-accumulate-grad hook has
fired for all its parameters. The last hook of the backward pass waits for every bucket
and writes the averaged gradients back into ``.grad``.

>>> from tinyres import nn
>>> list(nn.DataParallel(nn.Linear(2, 1)).state_dict())
['module.weight', 'module.bias']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from tinyres import distributed as dist
from tinyres.engine import Tensor
from tinyres.nn.module import Module


def _refuse_devices(name: str, device_ids: Any) -> None:
    if device_ids not in (None, [], ["cpu"]):
        raise ValueError(f"{name}: device_ids are GPU indices and tinyres runs on the CPU; "
                         f"pass device_ids=None, got {device_ids!r}")


class DataParallel(Module):
    """PyTorch's ``nn.DataParallel`` on a machine with no GPU: it runs the module as it is
    (PyTorch does the same there), and its state dict keys start with ``module.``."""

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0):
        super().__init__()
        _refuse_devices("DataParallel", device_ids)
        self.module = module
        self.dim = dim

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        return self.module(*inputs, **kwargs)


class _Bucket:
    """Parameters whose gradients travel in one all-reduce, as one flat array."""

    def __init__(self, params: list[Tensor]):
        self.params = params
        self.ready = 0
        self.flat: np.ndarray | None = None
        self.work: dist.Work | None = None


def _buckets(params: list[Tensor], cap_bytes: int, first_cap_bytes: int) -> list[_Bucket]:
    """Reverse ``parameters()`` order, cut whenever a bucket would pass its size cap.

    The first bucket is small (PyTorch's 1 MB) so the first all-reduce starts early."""
    buckets, current, size, cap = [], [], 0, first_cap_bytes
    for p in reversed(params):
        nbytes = p._data.nbytes
        if current and (size + nbytes > cap or p.dtype != current[0].dtype):
            buckets.append(_Bucket(current))
            current, size, cap = [], 0, cap_bytes
        current.append(p)
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


class DistributedDataParallel(Module):
    """Run ``module`` on this rank's shard; average gradients over the ranks during backward.

    ``bucket_cap_mb`` (default 25, PyTorch's) bounds a bucket's size; ``no_sync()`` skips
    the all-reduce (gradients accumulate locally until a backward outside it);
    ``broadcast_buffers`` copies rank 0's buffers (batch-norm running statistics) to every
    rank before each training forward, as PyTorch does. A parameter that gets no gradient
    in a backward would leave its bucket waiting; the next forward then says so (as
    PyTorch does) unless ``find_unused_parameters=True``, which marks such parameters
    ready after each forward (their gradient counts as zero).
    """

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group: Any = None,
                 bucket_cap_mb: float | None = None, find_unused_parameters: bool = False, **kwargs: Any):
        super().__init__()
        _refuse_devices("DistributedDataParallel", device_ids)
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: the default process group is not initialized; "
                               "call tinyres.distributed.init_process_group('gloo') first")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        self.world_size = dist.get_world_size()
        # The same starting point everywhere: rank 0's parameters and buffers.
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t, 0)
        self._params = [p for p in module.parameters() if p.requires_grad]
        cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * 2**20)
        self._buckets = _buckets(self._params, cap, min(cap, 2**20))
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._next = 0  # the next bucket to launch: every rank launches them in the same order
        self._handles = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in self._params]

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate gradients locally, with no communication."""
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if any(b.ready for b in self._buckets):
            raise RuntimeError(
                "DistributedDataParallel: Expected to have finished reduction in the prior iteration before "
                "starting a new one: some parameters got no gradient. Pass find_unused_parameters=True, or "
                "make sure every parameter takes part in the loss.")
        if self.broadcast_buffers and self.module.training:
            for b in self.module.buffers():
                dist.broadcast(b, 0)
        out = self.module(*inputs, **kwargs)
        if self.find_unused_parameters and self.require_backward_grad_sync and self.module.training:
            used = _leaves_reached(out)
            for p in self._params:
                if id(p) not in used:
                    self._grad_ready(p)
        return out

    # ---- the reducer ----------------------------------------------------------------------
    def _grad_ready(self, param: Tensor) -> None:
        """Post-accumulate-grad hook: count ``param`` in; launch every bucket now complete."""
        if not self.require_backward_grad_sync:
            return
        self._bucket_of[id(param)].ready += 1
        while self._next < len(self._buckets) and self._complete(self._buckets[self._next]):
            self._launch(self._buckets[self._next])
            self._next += 1
        for b in self._buckets[:self._next]:  # MPI progresses a non-blocking call inside MPI calls
            b.work.is_completed()
        if self._next == len(self._buckets):
            self._finish()

    @staticmethod
    def _complete(bucket: _Bucket) -> bool:
        return bucket.ready == len(bucket.params)

    def _launch(self, bucket: _Bucket) -> None:
        grads = [np.zeros(p.shape, p.dtype) if p.grad is None else p.grad._data for p in bucket.params]
        bucket.flat = np.concatenate([g.ravel() for g in grads])
        bucket.work = dist.all_reduce_array(bucket.flat, dist.ReduceOp.SUM, async_op=True)

    def _finish(self) -> None:
        """Wait for every bucket; each rank's ``.grad`` becomes the mean over ranks."""
        for b in self._buckets:
            b.work.wait()
            b.flat /= self.world_size
            start = 0
            for p in b.params:
                n = p._data.size
                p.grad = Tensor(b.flat[start:start + n].reshape(p.shape))
                start += n
            b.ready, b.flat, b.work = 0, None, None
        self._next = 0


def _leaves_reached(out: Any) -> set[int]:
    """ids of the leaf tensors that the graph behind ``out`` (a tensor or tuple/list/dict of them) reaches."""
    stack = [t for t in (out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple))
                         else [out]) if isinstance(t, Tensor)]
    nodes: list[Any] = [t.grad_fn if t.grad_fn is not None else t for t in stack]
    seen: set[int] = set()
    leaves: set[int] = set()
    while nodes:
        node = nodes.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Tensor):
            leaves.add(id(node))
        else:
            nodes.extend(node.parents)
    return leaves
