"""Adam (Kingma & Ba, 2015): steps scaled by running moments of the gradient.

For each parameter p with gradient g at step t = 1, 2, ... (PyTorch's form)::

    g = g + weight_decay * p                       # L2 penalty, as in torch.optim.Adam
    m = beta1 * m + (1 - beta1) * g                # first moment (mean)
    v = beta2 * v + (1 - beta2) * g²               # second moment (uncentred variance)
    v_max = max(v_max, v)   (amsgrad only; then v_max replaces v below)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The divisions by 1 - beta^t undo the bias of moments that start at zero.

>>> import tinyres as tr
>>> w = tr.tensor([1.0, -1.0], requires_grad=True)
>>> opt = Adam([w], lr=0.1)
>>> (w * w).sum().backward()
>>> opt.step()                    # the first step moves each weight by about lr
>>> w.detach().numpy().round(4)
array([ 0.9, -0.9], dtype=float32)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinyres.engine import Tensor, no_grad
from tinyres.optim.optimizer import Optimizer, check_non_negative


class Adam(Optimizer):
    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        check_non_negative(lr=lr, eps=eps, weight_decay=weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"invalid beta at index {i}: {beta}; expected 0 <= beta < 1")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    @no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        for group, p, g in self._params_with_grad():
            beta1, beta2 = group["betas"]
            if group["weight_decay"] != 0:
                g = g + group["weight_decay"] * p._data
            state = self.state.setdefault(p, {})
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(p._data)
                state["exp_avg_sq"] = np.zeros_like(p._data)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = np.zeros_like(p._data)
            state["step"] += 1
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m += (1 - beta1) * (g - m)  # = beta1*m + (1-beta1)*g, PyTorch's lerp form
            v *= beta2
            v += (1 - beta2) * g * g
            if group["amsgrad"]:
                np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                v = state["max_exp_avg_sq"]
            step_size = group["lr"] / (1 - beta1 ** state["step"])
            denom = np.sqrt(v) / math.sqrt(1 - beta2 ** state["step"]) + group["eps"]
            p.sub_(Tensor(step_size * m / denom))
