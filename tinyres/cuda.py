"""``tinyres.cuda``: there is no GPU here. Programs that check first run on the CPU.

>>> import tinyres as torch
>>> torch.cuda.is_available(), torch.cuda.device_count()
(False, 0)
"""

from __future__ import annotations

from tinyres.plumbing import refuse_device


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Does nothing, as PyTorch's does on a machine without CUDA (seeding code calls it)."""


def manual_seed_all(seed: int) -> None:
    """Does nothing, as PyTorch's does on a machine without CUDA."""


def current_device() -> int:
    refuse_device("cuda")
    return 0  # unreachable; refuse_device raises


def synchronize() -> None:
    refuse_device("cuda")
