"""Batches from an in-memory data set: shuffling, augmentation, a seeded generator.

Like ``torch.utils.data.DataLoader`` for arrays. Every random choice (the order of
the examples, the crops and flips) is drawn from one ``numpy.random.Generator``, so
the same seed gives the same batches, and saving ``loader.generator``'s state at the
end of an epoch is enough to continue a run exactly (``tinyres.training`` does).

>>> import numpy as np
>>> from tinyres.data import ArrayDataset
>>> ds = ArrayDataset(np.zeros((10, 1, 2, 2)), np.arange(10))
>>> loader = DataLoader(ds, batch_size=4, shuffle=True, generator=0)
>>> [y.shape for _, y in loader]
[(4,), (4,), (2,)]
>>> len(DataLoader(ds, batch_size=4, drop_last=True))
2
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from tinyres.data.dataset import ArrayDataset
from tinyres.engine import Tensor

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class DataLoader:
    """Yield ``(images, labels)`` tensors of up to ``batch_size`` examples.

    ``shuffle`` draws a new order every pass; ``drop_last`` skips a final short
    batch; ``transform(images, rng)`` augments each batch; ``generator`` is a seed
    or a ``numpy.random.Generator`` (a fresh, unseeded one by default).
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        transform: Transform | None = None,
        generator: int | np.random.Generator | None = None,
    ):
        if not isinstance(dataset, ArrayDataset):
            raise TypeError(f"DataLoader expects an ArrayDataset, got {type(dataset).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        self.generator = (
            generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
        )

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.dataset)
        order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.dataset.images[index]
            if self.transform is not None:
                images = self.transform(images, self.generator)
            yield Tensor(images), Tensor(self.dataset.labels[index])
