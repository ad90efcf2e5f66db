"""``DistributedSampler``: each rank's share of a data set's indices, as PyTorch's.

Every rank draws the same permutation (seeded by ``seed + epoch``, so call ``set_epoch``
at the start of each epoch for a new order), pads it by repeating its start (or, with
``drop_last``, cuts it) to a multiple of ``num_replicas``, and takes every
``num_replicas``-th index from its rank on: equal shards that together hold every example.

>>> s = DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False)
>>> list(s), len(s)
([1, 4, 7, 0], 4)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np

from tinyres import distributed as dist


class DistributedSampler:
    """Indices ``rank, rank + num_replicas, ...`` of a (shuffled, padded) pass over ``dataset``.

    ``num_replicas`` and ``rank`` default to the process group's world size and rank.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if num_replicas is None or rank is None:
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler: pass num_replicas and rank, or call "
                                   "tinyres.distributed.init_process_group first")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, seed, drop_last, 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle else np.arange(n)
        if self.drop_last:
            order = order[: self.total_size]
        else:  # pad by repeating from the start, as PyTorch does
            order = np.resize(order, self.total_size) if n else order
        return iter(order[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle for each epoch, the same on every rank."""
        self.epoch = int(epoch)
