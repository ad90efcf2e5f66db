"""scikit-learn's handwritten digits: 1,797 images of 8x8 pixels, 10 classes.

The data ship inside scikit-learn (the optional extra ``tinyres[digits]``), so they
work without a download. The split is fixed: a seeded, class-stratified 20% of the
images is the test set (359 images), the rest (1,438) the training set. Pixels go
from 0..16 to float32 and are standardised with the training set's mean and std.

The images stay 8x8. A CIFAR ResNet's three stages then see 8x8, 4x4 and 2x2 feature
maps (instead of 32, 16 and 8), and global average pooling makes the classifier
independent of the size; upsampling to 32x32 would cost 16x the compute for no new
information.
"""

from __future__ import annotations

import numpy as np

from tinyres.data.dataset import ArrayDataset, standardize

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits() -> tuple[ArrayDataset, ArrayDataset]:
    """The (train, test) data sets, images of shape (N, 1, 8, 8)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as err:
        raise ImportError(
            "the digits data set comes with scikit-learn, which is not installed; "
            "install it with: pip install 'tinyres[digits]'  (or pip install scikit-learn)"
        ) from err
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train, test = split(labels, TEST_FRACTION, SPLIT_SEED)
    return standardize(ArrayDataset(images[train], labels[train]), ArrayDataset(images[test], labels[test]))


def split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test), each class split in the same proportion.

    >>> train, test = split(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1]), 0.25, seed=0)
    >>> len(train), len(test), sorted(test.tolist())   # one of class 0, one of class 1
    (7, 2, [2, 6])
    """
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.extend(members[: round(test_fraction * len(members))])
    test = np.sort(np.array(test, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test
