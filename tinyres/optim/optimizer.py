"""The base class of every optimizer: parameter groups, ``zero_grad`` and state dicts.

An optimizer holds *parameter groups*: lists of parameters that share settings such
as the learning rate. Each group is a dict ``{"params": [...], "lr": ..., ...}``; a
learning-rate scheduler changes ``group["lr"]`` between epochs. Per-parameter
buffers (momentum, Adam's moment estimates) live in ``optimizer.state[param]``.

Updates are in-place tensor ops (``p.sub_(...)``) under ``no_grad()``, as in PyTorch:
nothing is recorded in the autograd graph, but each bumps the parameter's version, so
a ``backward()`` through a forward pass made before ``step()`` raises instead of
using the new weights with the old activations. The buffers (momentum, moments) are
plain arrays that only the optimizer sees.

>>> import tinyres as tr
>>> from tinyres.optim import SGD
>>> w = tr.ones(2, requires_grad=True)
>>> opt = SGD([w], lr=0.1)
>>> (w * w).sum().backward()
>>> opt.step()
>>> w
tensor([0.8, 0.8], shape=(2,), dtype=float32, requires_grad=True)
>>> opt.zero_grad()
>>> w.grad is None
True
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinyres.engine import Tensor


def check_non_negative(**settings: float) -> None:
    """Raise a clear error for a negative setting (``lr``, ``weight_decay``, ...)."""
    for name, value in settings.items():
        if value < 0:
            raise ValueError(f"invalid {name} {value}: expected {name} >= 0")


class Optimizer:
    """Parameter groups plus per-parameter state; subclasses write ``step``.

    ``params`` is an iterable of tensors, or of dicts each with a ``"params"`` list
    and any settings that override ``defaults`` for that group (as in PyTorch).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group; settings it does not give are taken from ``defaults``."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"a parameter group is a dict with a 'params' key, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one made by an operation)")
            if id(p) in seen:
                raise ValueError("a parameter appears in more than one parameter group")
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; expected some of {sorted(self.defaults)}")
        self.param_groups.append({**self.defaults, **group, "params": params})

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients, so the next ``backward`` does not add to old ones.

        ``set_to_none=True`` (PyTorch's default) drops the gradient tensors; ``False``
        fills them with zeros in place.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def step(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no step")

    def _params_with_grad(self) -> Iterable[tuple[dict[str, Any], Tensor, np.ndarray]]:
        """(group, parameter, gradient array) for every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield group, p, p.grad._data

    # ---- saving and resuming --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [...]}`` as in PyTorch.

        Parameters are named by their position across all groups (0, 1, 2, ...), so
        the dict can be loaded into a fresh optimizer over a fresh copy of the model.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            groups.append({**group, "params": [index[id(p)] for p in group["params"]]})
        state = {
            index[id(p)]: {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in s.items()}
            for p, s in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore settings and buffers saved by ``state_dict``.

        Everything is checked and built first and assigned last, so a state dict that
        does not fit leaves the optimizer as it was.
        """
        if not isinstance(state_dict, dict) or not {"param_groups", "state"} <= state_dict.keys():
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"optimizer state dict: expected 'param_groups' and 'state', got {got}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state dict has {len(saved_groups)} parameter groups, optimizer has "
                f"{len(self.param_groups)}"
            )
        params: dict[int, Tensor] = {}
        for group, saved in zip(self.param_groups, saved_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"a parameter group has {len(group['params'])} parameters, the state dict's "
                    f"group has {len(saved['params'])}"
                )
            params.update(zip((int(i) for i in saved["params"]), group["params"]))
        state: dict[Tensor, dict[str, Any]] = {}
        for i, s in state_dict["state"].items():
            if int(i) not in params:
                raise ValueError(f"state dict has state for parameter {i}, which no parameter group lists")
            p = params[int(i)]
            state[p] = {}
            for k, v in s.items():
                if isinstance(v, np.ndarray) and v.shape != p.shape:
                    raise ValueError(f"state {k!r} of parameter {i} has shape {v.shape}, its parameter "
                                     f"has {p.shape}")
                if isinstance(v, np.ndarray) and v.dtype.kind not in "biuf":
                    raise ValueError(f"state {k!r} of parameter {i} holds {v.dtype}, not numbers")
                state[p][k] = v.astype(p.dtype) if isinstance(v, np.ndarray) else v
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        self.state = state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join([*lines, ")"])
