"""``tinyres.utils.data``: ``Dataset``, ``TensorDataset`` and ``DataLoader``, as in PyTorch.

The loader is ``tinyres.data.DataLoader`` (one loader for the library); it takes any
map-style data set (``__len__`` and ``__getitem__``) and stacks the examples of a batch.

>>> import tinyres as torch
>>> from tinyres.utils.data import DataLoader, TensorDataset
>>> ds = TensorDataset(torch.arange(10.0).view(5, 2), torch.arange(5))
>>> g = torch.Generator().manual_seed(0)
>>> [y.shape for _, y in DataLoader(ds, batch_size=2, shuffle=True, generator=g)]
[tinyres.Size([2]), tinyres.Size([2]), tinyres.Size([1])]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyres.data.loader import DataLoader, Dataset
from tinyres.engine import Tensor
from tinyres.plumbing import Generator
from tinyres.utils.data.distributed import DistributedSampler


class TensorDataset(Dataset):
    """Examples are the i-th rows of the given tensors (which share their first size)."""

    def __init__(self, *tensors: Tensor):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        sizes = {len(t) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"TensorDataset: tensors must share their first size, got {sorted(sizes)}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]


def random_split(dataset: Any, lengths: Sequence[float], generator: Any = None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random subsets of the given lengths (or
    fractions summing to 1, rounded as PyTorch does: the remainder goes round-robin)."""
    n = len(dataset)
    if all(0 <= f <= 1 for f in lengths) and abs(sum(lengths) - 1) < 1e-9 and sum(lengths) != n:
        counts = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths {list(lengths)} must sum to the data set's size {n}")
    rng = generator.rng if isinstance(generator, Generator) else np.random.default_rng(generator)
    order = rng.permutation(n).tolist()
    ends = np.cumsum(lengths).tolist()
    return [Subset(dataset, order[end - length : end]) for length, end in zip(lengths, ends)]


__all__ = ["DataLoader", "Dataset", "DistributedSampler", "Subset", "TensorDataset", "random_split"]
