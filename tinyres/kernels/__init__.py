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

The convolution *algorithm* is a second choice, orthogonal to the tier: ``"im2col"``
(the tier's general kernels), ``"winograd"`` (Winograd F(m x m, 3 x 3) for every 3x3,
stride-1, undilated convolution; other convolutions still run im2col) or ``"auto"``,
the default: Winograd on the shapes where it measured faster (``tinyres.ops.conv``).
Unlike the tier it is a context variable, so a thread's choice stays in that thread:

>>> with kernels.use_algorithm("winograd", tile=2):
...     kernels.get_algorithm()
('winograd', 2)
"""

from __future__ import annotations

import contextlib
import contextvars
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


ALGORITHMS = ("auto", "im2col", "winograd")
# (name, tile): tile is Winograd's output tile size m (2 or 4), or None to choose by shape.
_algorithm: contextvars.ContextVar[tuple[str, int | None]] = contextvars.ContextVar(
    "tinyres_conv_algorithm", default=("auto", None)
)


def get_algorithm() -> tuple[str, int | None]:
    """The convolution algorithm and Winograd tile size in force, e.g. ``("auto", None)``."""
    return _algorithm.get()


@contextlib.contextmanager
def use_algorithm(name: str, tile: int | None = None) -> Iterator[None]:
    """Convolve with algorithm ``name`` inside a ``with`` block (tests, lessons, benchmarks).

    ``tile`` fixes Winograd's output tile (2 for F(2x2, 3x3), 4 for F(4x4, 3x3)).
    """
    if name not in ALGORITHMS:
        raise ValueError(f"unknown convolution algorithm {name!r}; expected one of {ALGORITHMS}")
    if tile is not None and (name != "winograd" or tile not in (2, 4)):
        raise ValueError(f"tile must be None, or 2 or 4 with 'winograd'; got tile={tile!r} for {name!r}")
    token = _algorithm.set((name, tile))
    try:
        yield
    finally:
        _algorithm.reset(token)
