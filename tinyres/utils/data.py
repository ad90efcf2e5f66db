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

from typing import Any

from tinyres.data.loader import DataLoader, Dataset
from tinyres.engine import Tensor


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


__all__ = ["DataLoader", "Dataset", "TensorDataset"]
