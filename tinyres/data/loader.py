"""Batches from a data set: shuffling, augmentation, a seeded generator.

Like ``torch.utils.data.DataLoader``. An ``ArrayDataset`` is sliced a batch at a time
(fast, and with batch-wise augmentation); any other map-style data set (a ``Dataset``
with ``__len__`` and ``__getitem__``, such as ``tinyres.utils.data.TensorDataset``)
is read one example at a time and the examples are stacked (``collate``).
Every random choice (the order of the examples, the crops and flips) is drawn from
one ``numpy.random.Generator``, so
the same seed gives the same batches, and saving ``loader.generator``'s state at the
end of an epoch is enough to continue a run exactly (``tinyres.training`` does).

>>> import numpy as np
>>> from tinyres.data import ArrayDataset
>>> ds = ArrayDataset(np.zeros((10, 1, 2, 2)), np.arange(10))
>>> loader = DataLoader(ds, batch_size=4, shuffle=True, generator=0)
>>> [tuple(y.shape) for _, y in loader]
[(4,), (4,), (2,)]
>>> len(DataLoader(ds, batch_size=4, drop_last=True))
2
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinyres.data.dataset import ArrayDataset
from tinyres.engine import Tensor
from tinyres.plumbing import Generator

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class Dataset:
    """A map-style data set, as ``torch.utils.data.Dataset``: subclasses define
    ``__len__`` and ``__getitem__(i)`` returning one example (a tuple of fields)."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


def collate(examples: list[Any]) -> Any:
    """Stack a list of examples into a batch, field by field, as PyTorch's default_collate:
    tensors and arrays are stacked, ints become int64 and floats float64 tensors."""
    first = examples[0]
    if isinstance(first, (tuple, list)):
        return [collate(list(field)) for field in zip(*examples)]
    if isinstance(first, dict):
        return {key: collate([e[key] for e in examples]) for key in first}
    if isinstance(first, (Tensor, np.ndarray, np.generic, int, float, bool)):
        arrays = [e._data if isinstance(e, Tensor) else e for e in examples]
        batch = np.stack([np.asarray(a) for a in arrays])
        if isinstance(first, float):
            batch = batch.astype(np.float64)
        return Tensor(batch)
    raise TypeError(f"DataLoader: cannot batch examples of type {type(first).__name__}; "
                    "return tensors, arrays, numbers, or tuples/dicts of them")


class DataLoader:
    """Yield batches of up to ``batch_size`` examples: ``(images, labels)`` tensors
    from an ``ArrayDataset``, collated fields from any other ``Dataset``.

    ``shuffle`` draws a new order every pass; ``drop_last`` skips a final short
    batch; ``transform(images, rng)`` augments each batch of an ``ArrayDataset``;
    ``generator`` is a seed, a ``numpy.random.Generator`` or a ``tinyres.Generator``
    (a fresh, unseeded one by default). ``num_workers`` and ``pin_memory`` are
    accepted for PyTorch programs and change nothing: batches are made in this process.
    ``sampler`` (an iterable of indices with a length, such as ``DistributedSampler``)
    gives the order of a pass instead of ``shuffle``.
    """

    def __init__(
        self,
        dataset: ArrayDataset | Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        transform: Transform | None = None,
        generator: int | np.random.Generator | Generator | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        sampler: Any = None,
    ):
        map_style = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
        if not (isinstance(dataset, ArrayDataset) or map_style):
            raise TypeError(f"DataLoader expects an ArrayDataset or a Dataset with __len__ and "
                            f"__getitem__, got {type(dataset).__name__}")
        if transform is not None and not isinstance(dataset, ArrayDataset):
            raise TypeError("DataLoader: transform= works on an ArrayDataset's image batches; "
                            "a Dataset applies its own transform in __getitem__")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle "
                             "(the sampler decides the order; a DistributedSampler shuffles itself)")
        self.sampler = sampler  # yields the indices of a pass (e.g. this rank's shard), or None
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        if isinstance(generator, Generator):
            generator = generator.rng
        self.generator = (
            generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
        )

    def __len__(self) -> int:
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        b = self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Any]:
        n = len(self.dataset)
        order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            if not isinstance(self.dataset, ArrayDataset):
                yield collate([self.dataset[int(i)] for i in index])
                continue
            images = self.dataset.images[index]
            if self.transform is not None:
                images = self.transform(images, self.generator)
            yield Tensor(images), Tensor(self.dataset.labels[index])
