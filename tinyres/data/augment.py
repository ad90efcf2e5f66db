"""The ResNet paper's augmentation (section 4.2), for a whole batch at once.

"4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the
padded image or its horizontal flip." For an H x W image: pad ``padding`` zeros on
each side, cut out a random H x W window, and mirror it left-right with probability
1/2. Every image in the batch gets its own offsets and flip.

The batch is done in one NumPy gather instead of a Python loop over images: for
image n the output row i reads padded row ``oy[n] + i`` and output column j reads
padded column ``ox[n] + j`` (or ``ox[n] + W - 1 - j`` when flipped).

>>> import numpy as np
>>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
>>> aug = RandomCropFlip(padding=1, flip=False)
>>> out = aug(x, np.random.default_rng(3))
>>> out.shape
(1, 1, 4, 4)
>>> out[0, 0]                     # moved up and right a pixel; zeros came from the padding
array([[ 0.,  4.,  5.,  6.],
       [ 0.,  8.,  9., 10.],
       [ 0., 12., 13., 14.],
       [ 0.,  0.,  0.,  0.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np


class RandomCropFlip:
    """Zero-pad, random crop back to the input size, random horizontal flip.

    ``padding=4`` with ``flip=True`` is the paper's CIFAR recipe. For 8x8 digits the
    training code uses ``padding=1`` (the same 1/8 of the side) and no flip, since a
    mirrored digit is a different symbol (or none).
    """

    def __init__(self, padding: int = 4, flip: bool = True):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = padding
        self.flip = flip

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if images.ndim != 4:
            raise ValueError(f"expected a batch of shape (N, C, H, W), got shape {images.shape}")
        n, c, h, w = images.shape
        p = self.padding
        padded = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
        oy = rng.integers(0, 2 * p + 1, size=n)
        ox = rng.integers(0, 2 * p + 1, size=n)
        rows = oy[:, None] + np.arange(h)  # (N, H)
        cols = ox[:, None] + np.arange(w)  # (N, W)
        if self.flip:
            flipped = rng.random(n) < 0.5
            cols = np.where(flipped[:, None], cols[:, ::-1], cols)
        return padded[
            np.arange(n)[:, None, None, None],
            np.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"
