"""The handle ``register_hook`` returns, whose ``remove()`` unregisters the hook (as PyTorch's).

Hooks live in a dict on their owner (a tensor, or the op that made it) under a key
unique in the process; the dict is replaced on every change, never mutated, so an
op's class-level empty default is safe to share.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

_hook_ids = itertools.count()


class RemovableHandle:
    """What ``register_hook`` returns: ``remove()`` unregisters the hook (again: no effect)."""

    def __init__(self, owner: Any, attribute: str, key: int) -> None:
        self.owner, self.attribute, self.key = owner, attribute, key

    def remove(self) -> None:
        hooks = getattr(self.owner, self.attribute)
        setattr(self.owner, self.attribute, {k: h for k, h in hooks.items() if k != self.key})


def add_hook(owner: Any, attribute: str, hook: Callable[..., Any]) -> RemovableHandle:
    """Register ``hook`` in ``owner.<attribute>`` (a dict replaced, never mutated: a handle
    removes from the dict its owner holds now)."""
    key = next(_hook_ids)
    setattr(owner, attribute, {**getattr(owner, attribute), key: hook})
    return RemovableHandle(owner, attribute, key)
