"""Optimizers and learning-rate schedules, as in ``torch.optim``.

>>> import tinyres as tr
>>> from tinyres import optim
>>> w = tr.ones(3, requires_grad=True)
>>> opt = optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=5e-4)
>>> sched = optim.lr_scheduler.MultiStepLR(opt, milestones=[10], gamma=0.1)
>>> sched.get_last_lr()
[0.1]
"""

from tinyres.optim import lr_scheduler
from tinyres.optim.adam import Adam
from tinyres.optim.optimizer import Optimizer
from tinyres.optim.sgd import SGD

__all__ = ["SGD", "Adam", "Optimizer", "lr_scheduler"]
