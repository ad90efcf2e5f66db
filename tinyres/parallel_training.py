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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tinyres import distributed as dist
from tinyres.engine import Tensor
from tinyres.nn.module import Module


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_writer() -> bool:
    """True on rank 0, and in a process that is not part of a process group."""
    return not dist.is_initialized() or dist.get_rank() == 0


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

