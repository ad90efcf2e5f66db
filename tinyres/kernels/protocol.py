"""The one builder of a kernel module's tier protocol, for every family that keeps a ``saved``.

An op calls its kernel module twice (``docs/architecture.md``, "The tier contract"):
``forward(*args) -> (y, saved)`` in its forward and ``backward(grad, saved, *flags)`` in
its backward. ``saved`` is the cache of CS231n's (out, cache) contract: forward decides
what backward needs, and the op only carries it. A kernel module writes array functions
(``array_forward(*args) -> result``, ``array_backward(grad, *arguments, *flags)``) and
builds the pair with ``build``; what differs between families is said by two small
functions of the family's reference module, which also binds them (``conv_reference.protocol``,
``batchnorm_reference.protocol``):

- ``save(args, options, result) -> (y, saved)``: the output, and what backward reads
  (``conv_reference.save``: x and w as the kernels read them, the geometry, the options);
- ``read(saved) -> (arguments, options)``: ``array_backward``'s arguments after the
  gradient, and its keyword options.

A module may also give ``prepare(*args) -> args``: the Numba convolutions copy x once
into the layout their kernels read, for both passes. Keyword ``options`` of forward
(Winograd's tile ``m``) are kept by ``save`` and handed back to ``array_backward``:

>>> import numpy as np
>>> forward, backward = build(
...     lambda x, k=2.0: k * x, lambda grad, x, k=2.0: k * grad,
...     save=lambda args, options, y: (y, (args, options)), read=lambda saved: saved)
>>> y, saved = forward(np.ones(2), k=3.0)
>>> y, backward(np.ones(2), saved)
(array([3., 3.]), array([3., 3.]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Saver = Callable[[tuple, dict, Any], tuple[Any, Any]]
Reader = Callable[[Any], tuple[tuple, dict]]


def build(
    array_forward: Callable[..., Any],
    array_backward: Callable[..., Any],
    *,
    save: Saver,
    read: Reader,
    prepare: Callable[..., tuple] | None = None,
) -> tuple[Callable[..., tuple[Any, Any]], Callable[..., Any]]:
    """The tier protocol's ``forward`` and ``backward`` around a module's array functions.

    ``forward(*args, **options) -> (y, saved)`` runs ``prepare`` (if given), then
    ``array_forward(*args, **options)``, and lets ``save`` pick y and saved;
    ``backward(grad, saved, *flags)`` is ``array_backward(grad, *arguments, *flags,
    **options)`` with ``arguments, options = read(saved)`` (flags may be named too:
    ``bias_grad=False``).
    """

    def forward(*args: Any, **options: Any) -> tuple[Any, Any]:
        """(y, saved), saved being what ``backward`` needs."""
        if prepare is not None:
            args = prepare(*args)
        return save(args, options, array_forward(*args, **options))

    def backward(grad: Any, saved: Any, *flags: bool, **named_flags: bool) -> Any:
        """The gradients, from ``forward``'s saved object (and the op's flags, if any)."""
        arguments, options = read(saved)
        return array_backward(grad, *arguments, *flags, **named_flags, **options)

    return forward, backward
