"""The seams where a learner's own code stands in for a piece of the library.

``tinyres.course.mine("DIR")`` puts the learner's passing exercise solutions in place of
the library's pieces for a ``with`` block. Three context variables carry the swap, so a
block in one thread (or asyncio task) changes nothing another thread sees:

- ``tinyres.engine.WALK``: the backward walk ``Tensor.backward`` runs (ex01, ex03);
- ``tinyres.kernels.use_learner``: kernel modules that sit before the registry's tiers
  (the im2col convolution, max-pool backward, batch-norm backward);
- ``SWAPPED`` here, for everything else: the library reads it at one line per seam
  (``learner("Tanh")`` in ``ops.tanh``, ``learner("sgd_step")`` in ``SGD.step``, ...).

Outside such a block every ``learner(name)`` is ``None`` and the library runs its own code.
This module imports nothing from the library, so the lowest layers (ops, optim) can read it.

>>> learner("Tanh") is None
True
>>> with swapped({"Tanh": "the learner's Tanh"}):
...     learner("Tanh")
"the learner's Tanh"
>>> learner("Tanh") is None
True
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

# The names the library reads, one per seam; ``swapped`` refuses any other, so a typo
# cannot silently leave the library's piece in place.
SEAMS = ("MatMul", "Tanh", "cross_entropy", "sgd_step", "make_stage")

SWAPPED: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "tinyres_learner_pieces", default=MappingProxyType({})
)


def learner(name: str) -> Any | None:
    """The learner's stand-in for seam ``name`` in this thread / task, or None: the library's."""
    return SWAPPED.get().get(name)


@contextlib.contextmanager
def swapped(pieces: Mapping[str, Any]) -> Iterator[None]:
    """Inside the block, ``learner(name)`` is ``pieces[name]`` (and None for other names)."""
    unknown = sorted(set(pieces) - set(SEAMS))
    if unknown:
        raise ValueError(f"unknown seam {', '.join(unknown)}; the seams are {', '.join(SEAMS)}")
    token = SWAPPED.set(MappingProxyType(dict(pieces)))
    try:
        yield
    finally:
        SWAPPED.reset(token)
