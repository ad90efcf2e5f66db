"""Learning-rate schedules: change each parameter group's ``lr`` once per epoch.

Call ``scheduler.step()`` after the epoch's ``optimizer.step()`` calls. As in
PyTorch, building a scheduler counts as step 0: it records each group's
``initial_lr`` and sets the rate for epoch 0.

- ``MultiStepLR``: multiply by ``gamma`` at each milestone epoch (the ResNet paper
  divides by 10 at 32k and 48k iterations);
- ``StepLR``: multiply by ``gamma`` every ``step_size`` epochs (PyTorch's MNIST example);
- ``CosineAnnealingLR``: follow half a cosine from the base rate down to ``eta_min``
  over ``T_max`` epochs.

>>> import tinyres as tr
>>> from tinyres.optim import SGD
>>> opt = SGD([tr.zeros(1, requires_grad=True)], lr=1.0)
>>> sched = MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
>>> lrs = []
>>> for epoch in range(5):
...     lrs.append(sched.get_last_lr()[0])
...     sched.step()
>>> [round(lr, 6) for lr in lrs]
[1.0, 1.0, 0.1, 0.1, 0.01]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from typing import Any

from tinyres.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: ``get_lr`` computes the next rates from the current ones.

    Subclasses give the *recursive* form that PyTorch's ``step()`` uses (new rate
    from the current rate, so a rate changed by hand keeps its effect) and the
    *closed form* (rate as a function of the epoch alone).
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} expects an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        elif any("initial_lr" not in g for g in optimizer.param_groups):
            raise KeyError("resuming with last_epoch != -1 needs 'initial_lr' in every parameter group")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__} has no get_lr")

    def _get_closed_form_lr(self) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__} has no closed form")

    def get_last_lr(self) -> list[float]:
        """The rates the last ``step`` set, one per parameter group."""
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (or jump to ``epoch``, using the closed form)."""
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
            lrs = self.get_lr()
        else:
            self.last_epoch = epoch
            lrs = self._get_closed_form_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (which is saved on its own)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


class MultiStepLR(LRScheduler):
    """lr = base_lr · gamma^(number of milestones <= epoch)."""

    def __init__(self, optimizer: Optimizer, milestones: list[int], gamma: float = 0.1, last_epoch: int = -1):
        milestones = [int(m) for m in milestones]
        if milestones != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {milestones}")
        # A Counter, as in PyTorch: a milestone listed twice multiplies by gamma twice.
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self.last_epoch not in self.milestones:
            return lrs
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.milestones = Counter(self.milestones)  # a saved file gives back a plain dict

    def _get_closed_form_lr(self) -> list[float]:
        passed = bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base * self.gamma**passed for base in self.base_lrs]


class StepLR(LRScheduler):
    """lr = base_lr · gamma^(epoch // step_size): decay by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return lrs
        return [lr * self.gamma for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) · (1 + cos(π · epoch / T_max)) / 2.

    ``step()`` uses PyTorch's recursive form, which equals this closed form when
    nothing else changes the rate; past ``T_max`` the cosine continues (the rate
    climbs back), as in PyTorch.

    >>> import tinyres as tr
    >>> from tinyres.optim import SGD
    >>> opt = SGD([tr.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = CosineAnnealingLR(opt, T_max=4)
    >>> for _ in range(4):
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if T_max <= 0:
            raise ValueError(f"T_max must be a positive number of epochs, got {T_max}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if t == 0:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and t > 0:
            return self._get_closed_form_lr()
        if (t - 1 - T) % (2 * T) == 0:
            # At the bottom of the cosine the ratio below would divide by zero.
            return [g["lr"] + (base - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for base, g in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (g["lr"] - eta_min) + eta_min for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        return [eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / T)) / 2 for base in self.base_lrs]
