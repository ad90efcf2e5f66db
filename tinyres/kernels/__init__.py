"""Array kernels behind the neural-network ops, in up to three tiers.

- ``"reference"``: plain loops or direct NumPy, written to be read, used as the oracle;
- ``"numpy"``: vectorised NumPy (e.g. im2col + one matrix product);
- ``"numba"``: compiled Numba kernels, the default and the fastest.

An op without a distinct tier falls back to the next simpler one. Choose the tier
for a block of code with ``use_tier`` (tests and lessons compare them this way):

>>> from tinyres import kernels
>>> with kernels.use_tier("reference"):
...     kernels.get_tier()
'reference'
>>> kernels.get_tier()
'numba'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

TIERS = ("reference", "numpy", "numba")
_tier = "numba"


def get_tier() -> str:
    """The tier ops use right now."""
    return _tier


def set_tier(name: str) -> None:
    """Make ``name`` the tier for every op from now on."""
    global _tier
    if name not in TIERS:
        raise ValueError(f"unknown kernel tier {name!r}; expected one of {TIERS}")
    _tier = name


@contextlib.contextmanager
def use_tier(name: str) -> Iterator[None]:
    """Use tier ``name`` inside a ``with`` block, then restore the previous one."""
    previous = _tier
    set_tier(name)
    try:
        yield
    finally:
        set_tier(previous)
