"""Grad mode: whether operations record a graph for ``backward`` right now.

``no_grad``, ``enable_grad``, ``set_grad_enabled`` and ``inference_mode`` (PyTorch's
names) set it for a ``with`` block or a decorated function; ``Function.apply`` in
``tinyres.engine`` reads it before recording an op.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

# A ContextVar, not a global: each thread (and each asyncio task) has its own value, so
# ``no_grad()`` while one thread evaluates cannot stop another thread from recording.
_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("grad_enabled", default=True)


def is_grad_enabled() -> bool:
    """Whether operations record a graph right now, in this thread (False inside ``no_grad``)."""
    return _grad_enabled.get()


class _GradMode:
    """Set grad mode for a ``with`` block, or for every call of a decorated function.

    One instance serves one ``with`` at a time (as in PyTorch); as a decorator each
    call gets a fresh instance, so recursion and threads are safe.
    """

    mode: bool | None = None  # None: leave grad mode as it is

    def __init__(self) -> None:
        self._tokens: list[contextvars.Token[bool]] = []

    def __enter__(self) -> None:
        if self.mode is not None:
            self._tokens.append(_grad_enabled.set(self.mode))

    def __exit__(self, *exc: object) -> None:
        if self._tokens:
            _grad_enabled.reset(self._tokens.pop())

    def _fresh(self) -> _GradMode:
        return type(self)()

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return function(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """Context manager (or decorator) that stops operations from recording a graph.

    >>> import tinyres as tr
    >>> w = tr.ones(2, requires_grad=True)
    >>> with tr.no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """

    mode = False


class enable_grad(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """Context manager (or decorator) that turns recording back on inside ``no_grad``."""

    mode = True


class set_grad_enabled(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """Turn recording on or off: at once when called, until the end of the block in ``with``.

    >>> import tinyres as tr
    >>> with tr.set_grad_enabled(False):
    ...     tr.is_grad_enabled()
    False
    >>> tr.is_grad_enabled()
    True
    """

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self.mode = bool(mode)
        # Called as a plain function it takes effect now, as torch.set_grad_enabled does.
        self._tokens.append(_grad_enabled.set(self.mode))

    def __enter__(self) -> None:
        pass  # already set by __init__; __exit__ restores the value from before

    def _fresh(self) -> _GradMode:
        fresh = _GradMode()
        fresh.mode = self.mode
        return fresh

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        self.__exit__()  # as a decorator it only applies inside the decorated function
        return super().__call__(function)


class inference_mode(_GradMode):  # noqa: N801 (PyTorch's lower-case name)
    """``no_grad`` under PyTorch's other name (tinyres has no separate inference tensors).

    ``inference_mode(False)`` leaves grad mode unchanged, as in PyTorch.
    """

    def __init__(self, mode: bool = True) -> None:
        super().__init__()
        self.mode = False if mode else None

    def _fresh(self) -> _GradMode:
        return inference_mode(self.mode is False)
