"""Data for training: in-memory data sets, a batch loader, and augmentation.

>>> import numpy as np
>>> from tinyres.data import ArrayDataset, DataLoader, RandomCropFlip
>>> ds = ArrayDataset(np.ones((6, 3, 32, 32)), np.zeros(6, np.int64))
>>> loader = DataLoader(ds, batch_size=4, shuffle=True, transform=RandomCropFlip(), generator=0)
>>> images, labels = next(iter(loader))
>>> images.shape, labels.dtype
(tinyres.Size([4, 3, 32, 32]), dtype('int64'))
"""

from tinyres.data.augment import RandomCropFlip
from tinyres.data.cifar10 import load_cifar10
from tinyres.data.dataset import ArrayDataset, standardize
from tinyres.data.digits import load_digits
from tinyres.data.loader import DataLoader

__all__ = ["ArrayDataset", "DataLoader", "RandomCropFlip", "load_cifar10", "load_digits", "standardize"]
