"""The small things PyTorch programs touch around the model: ``Size``, ``device``, ``Generator``.

tinyres runs on the CPU only. ``device("cpu")`` is accepted everywhere PyTorch takes a
device; asking for any other device (``"cuda"``, ``"mps"``) raises one clear error,
so a program written as ``torch.device("cuda" if torch.cuda.is_available() else "cpu")``
runs unchanged, and one that insists on a GPU stops at the line that asks for it.

>>> import tinyres as torch
>>> torch.zeros(1, 10).shape
tinyres.Size([1, 10])
>>> torch.device("cuda" if torch.cuda.is_available() else "cpu")
device(type='cpu')
>>> torch.device("cuda:0")
Traceback (most recent call last):
...
RuntimeError: device 'cuda:0' is not available: tinyres runs on the CPU only ...
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Size(tuple):
    """A tensor's shape: a tuple of ints whose repr is ``tinyres.Size([2, 3])``.

    Inside a message (``f"got shape {x.shape}"``) it reads as the plain tuple ``(2, 3)``.
    """

    def __repr__(self) -> str:
        return f"tinyres.Size({list(self)})"

    def __str__(self) -> str:
        return tuple.__repr__(self)

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return Size(item) if isinstance(index, slice) else item

    def numel(self) -> int:
        """The number of elements of a tensor of this shape."""
        return int(np.prod(self, dtype=np.int64))


class device:  # noqa: N801 - PyTorch's name
    """``device("cpu")`` or ``device("cpu", 0)``; any other device type is refused."""

    def __init__(self, type: str | device, index: int | None = None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string such as 'cpu', got {type!r}")
        name, _, number = type.partition(":")
        if name != "cpu":
            refuse_device(type)
        if number:
            index = int(number)
        self.type, self.index = "cpu", index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and other.type == self.type

    def __hash__(self) -> int:
        return hash(self.type)

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type={self.type!r}{index})"


def refuse_device(name: Any) -> None:
    """The one error for a device tinyres does not have."""
    raise RuntimeError(
        f"device {str(name)!r} is not available: tinyres runs on the CPU only "
        "(tinyres.cuda.is_available() is False); use 'cpu'"
    )


def is_device(value: Any) -> bool:
    """Whether ``value`` names a device (``"cpu"``, ``"cuda:0"``, a ``device``), not a dtype."""
    return isinstance(value, device) or (
        isinstance(value, str) and value.partition(":")[0] in ("cpu", "cuda", "mps", "xpu", "meta")
    )


def check_device(value: Any) -> None:
    """Accept None or the CPU; refuse any other device clearly."""
    if value is not None:
        device(value)


def refuse_half(where: str) -> None:
    """float16 is refused: NumPy's float16 arithmetic is slow and PyTorch's CPU half
    kernels differ from it, so numbers would silently disagree."""
    raise TypeError(
        f"{where}: float16 (half) is not supported by tinyres; use float32 or float64"
    )


def float_dtype_or_device(value: Any, where: str) -> np.dtype | None:
    """``value`` as a NumPy dtype, or None if it names the CPU; half and other devices refused."""
    if is_device(value):
        check_device(value)
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{where}: expected a dtype or the device 'cpu', got {value!r}") from None
    if dtype == np.float16:
        refuse_half(where)
    return dtype


class Generator:
    """A seedable random generator for ``DataLoader(generator=...)``, as ``torch.Generator``.

    >>> g = Generator().manual_seed(0)
    >>> int(g.rng.integers(100)) == int(Generator().manual_seed(0).rng.integers(100))
    True
    """

    def __init__(self, device: Any = "cpu"):
        check_device(device)
        self.rng = np.random.default_rng()

    def manual_seed(self, seed: int) -> Generator:
        self.rng = np.random.default_rng(seed)
        return self
