"""What ``tinyres.training`` adds when it runs under ``mpiexec -n N``: each rank trains on
its shard of every global batch, with the same numbers as one process.

- ``ShardedLoader``: every rank runs the *same* global loader (same seed: same order,
  same augmentation draws) and keeps its slice of each batch, so the union of the
  shards is exactly the batch one process would see, whatever N is.
- ``ShardLoss``: a rank's loss is the mean over its shard; DistributedDataParallel averages
  the ranks' gradients. That average is the global batch's gradient only when the shards are
  equal, so a short last batch split unevenly weights each rank's gradient by
  ``N * shard / batch`` (the loss *value* is kept, for the metrics).
- ``global_epoch_metrics``: the epoch's loss and accuracy over all ranks' examples.
- ``is_writer``: rank 0 alone writes checkpoints and metrics and shows progress.
- ``independent_jobs``/``my_share``: sweeps (many runs, each one process's) spread whole runs
  over the ranks instead: inside ``independent_jobs()`` a rank trains alone, as if no other
  rank existed, so each run gives the numbers it gives when the runs go one after another.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np

from tinyres import distributed as dist
from tinyres.engine import Tensor
from tinyres.nn.module import Module

# True while this rank runs a job of a sweep on its own (a context variable, not a global flag,
# so a thread's setting is its own).
_independent: ContextVar[bool] = ContextVar("independent", default=False)
T = TypeVar("T")


@contextmanager
def independent_jobs() -> Iterator[None]:
    """Inside: training in this process ignores the other ranks (no DDP, writes its own outputs)."""
    token = _independent.set(True)
    try:
        yield
    finally:
        _independent.reset(token)


def my_share(jobs: Sequence[T]) -> list[T]:
    """The jobs this rank runs: every N-th from its rank on (all of them outside a process group)."""
    if not dist.is_initialized():
        return list(jobs)
    return list(jobs[dist.get_rank()::dist.get_world_size()])


def world_size() -> int:
    """The ranks that share each batch: 1 outside a process group and inside ``independent_jobs``."""
    return dist.get_world_size() if dist.is_initialized() and not _independent.get() else 1


def is_writer() -> bool:
    """True on rank 0, in a process that is not part of a process group, and in an independent job."""
    return not dist.is_initialized() or _independent.get() or dist.get_rank() == 0


class ShardedLoader:
    """This rank's slice of every batch of ``loader`` (a ``DataLoader`` run identically on every rank)."""

    def __init__(self, loader: Any, rank: int, world: int):
        self.loader, self.rank, self.world = loader, rank, world
        self.weight = 1.0  # the current batch's gradient weight, N * shard / batch (ShardLoss reads it)
        self.seen = 0  # examples this rank has had in the current pass

    @property
    def generator(self) -> np.random.Generator:  # the global loader's, saved in checkpoints
        return self.loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self.seen = 0
        for images, labels in self.loader:
            parts = np.array_split(np.arange(len(labels)), self.world)  # sizes differ by at most 1
            index = parts[self.rank]
            self.weight = self.world * len(index) / len(labels)
            self.seen += len(index)
            yield Tensor(images._data[index]), Tensor(labels._data[index])


class ShardLoss(Module):
    """``loss_fn`` whose gradient is weighted by the loader's ``weight`` and whose value is not."""

    def __init__(self, loss_fn: Module, loader: ShardedLoader):
        super().__init__()
        self.loss_fn, self.loader = loss_fn, loader

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        loss = self.loss_fn(logits, labels)
        w = self.loader.weight
        if w == 1.0 or not logits.requires_grad:
            return loss
        return loss * w + (loss * (1.0 - w)).detach()  # value: loss; gradient: w * d(loss)


def global_epoch_metrics(loss: float, acc: float, speed: float, seen: int) -> tuple[float, float, float]:
    """(mean loss, accuracy, images/s) over every rank's ``seen`` examples."""
    totals = np.array([loss * seen, acc * seen, seen, speed], dtype=np.float64)
    dist.all_reduce_array(totals)
    return totals[0] / totals[2], totals[1] / totals[2], totals[3]

