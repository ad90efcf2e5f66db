"""A data set held in memory: an image array and a label array of the same length.

>>> import numpy as np
>>> ds = ArrayDataset(np.zeros((5, 1, 8, 8), np.float32), np.arange(5) % 2)
>>> len(ds), ds.image_shape, ds.num_classes
(5, (1, 8, 8), 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArrayDataset:
    """``images`` of shape (N, C, H, W) as float32, ``labels`` of shape (N,) as int64."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got shape {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"labels must have shape ({len(self.images)},) to match the images, got {self.labels.shape}"
            )
        # Frozen dataclass: set the normalised arrays through object.__setattr__.
        object.__setattr__(self, "images", np.ascontiguousarray(self.images, dtype=np.float32))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.images.shape[1:]

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def standardize(train: ArrayDataset, test: ArrayDataset) -> tuple[ArrayDataset, ArrayDataset]:
    """Shift and scale each channel to mean 0, std 1 using the *training* statistics.

    Statistics from the test set would leak information about it into training.

    >>> rng = np.random.default_rng(0)
    >>> a = ArrayDataset(rng.uniform(0, 9, (20, 2, 3, 3)), np.zeros(20, np.int64))
    >>> a, _ = standardize(a, a)
    >>> bool(np.allclose(a.images.mean(axis=(0, 2, 3)), 0, atol=1e-6))
    True
    >>> bool(np.allclose(a.images.std(axis=(0, 2, 3)), 1, atol=1e-6))
    True
    """
    mean = train.images.mean(axis=(0, 2, 3), keepdims=True)
    std = train.images.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    return tuple(ArrayDataset((d.images - mean) / std, d.labels) for d in (train, test))
