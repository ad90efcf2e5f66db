"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

For each parameter p with gradient g, PyTorch's update (and this one) is::

    g = g + weight_decay * p                     # L2 penalty (weight_decay/2)·|p|²
    b = g                                        # first step
    b = momentum * b + (1 - dampening) * g       # later steps
    g = g + momentum * b   if nesterov else  b
    p = p - lr * g

Note that the learning rate multiplies the whole velocity, not each gradient as in
Sutskever et al.; with a constant lr the two are the same up to a rescaling of b.

>>> import tinyres as tr
>>> w = tr.tensor([1.0], requires_grad=True)
>>> opt = SGD([w], lr=0.1, momentum=0.9)
>>> for _ in range(2):
...     opt.zero_grad()
...     (w * 2.0).sum().backward()   # gradient 2 each time
...     opt.step()
>>> round(float(w.item()), 4)        # 1 - 0.1*2 - 0.1*(0.9*2 + 2)
0.42
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinyres.engine import Tensor, no_grad
from tinyres.optim.optimizer import Optimizer, check_non_negative
from tinyres.pieces import learner


class SGD(Optimizer):
    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        check_non_negative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov)
        super().__init__(params, defaults)

    @no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        mine = learner("sgd_step")  # the learner's ex07 inside tinyres.course.mine
        for group, p, g in self._params_with_grad():
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            if mine is not None and group["dampening"] == 0 and not group["nesterov"]:
                mine(self.state.setdefault(p, {}), p, g, lr, momentum, weight_decay)
                continue
            if weight_decay != 0:
                g = g + weight_decay * p._data
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.copy()
                else:
                    buf *= momentum
                    buf += (1 - group["dampening"]) * g
                g = g + momentum * buf if group["nesterov"] else buf
            p.sub_(Tensor(lr * g))
