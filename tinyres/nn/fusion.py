"""When a model may run ``relu(bn(x))`` or ``relu(bn(x) + r)`` as one op, and the one place that decides.

``BatchNormReLU`` (``tinyres.ops.norm``) computes relu(batch_norm(x) [+ r]) in one
pass and stores one array where the pieces store two or three (the engine keeps each
op's inputs until backward: batch norm's output, and the sum, beside z; see
benchmarks/README.md, "Fusions"). A model
still *has* a ``BatchNorm2d`` and a ``ReLU`` (printing, ``state_dict``, hooks and
``summary`` are PyTorch's), and the fused op stands in for them only when nobody could
tell the difference:

- both are exactly ``nn.BatchNorm2d`` and ``nn.ReLU`` (a subclass, ``SyncBatchNorm``
  or another activation may do anything), with no forward hook and no ``forward``
  replaced on the instance (``tinyres.viz``, ``summary`` and a user's hooks see the
  pieces and the intermediate tensor);
- no learner's kernels stand in for batch norm or ReLU (``tinyres.course.mine``):
  the learner's batch-norm backward must run, on its own op;
- not inside ``with unfused():``, which code that reads the autograd graph afterwards
  (``tinyres.viz.trace``, a walk over ``grad_fn``) uses to see the pieces' ops, as
  PyTorch's graph has them: a fused op is one node of the graph.

Otherwise it calls ``relu(bn(x))``, the two modules as written. Either way the
numbers agree to float rounding (equal bit for bit in the forward), the running
statistics and ``num_batches_tracked`` move the same, and autograd gives the same
gradients (``tests/test_fusion.py``).

>>> import tinyres as tr
>>> from tinyres import nn
>>> bn, relu = nn.BatchNorm2d(2), nn.ReLU()
>>> x = tr.randn(3, 2, 4, 4)
>>> type(batch_norm_relu(bn, relu, x).grad_fn).__name__   # nothing observes: one op
'BatchNormReLU'
>>> handle = relu.register_forward_hook(lambda module, inputs, output: None)
>>> type(batch_norm_relu(bn, relu, x).grad_fn).__name__   # a hook on ReLU: the two modules
'Relu'
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from tinyres import kernels
from tinyres.engine import Tensor
from tinyres.nn.activation import ReLU
from tinyres.nn.batchnorm import BatchNorm2d
from tinyres.nn.module import Module
from tinyres.ops.norm import batch_norm_relu as fused_batch_norm_relu

# False inside ``unfused()``: a context variable, so a block in one thread changes nothing in another.
_fusing: contextvars.ContextVar[bool] = contextvars.ContextVar("tinyres_fusing", default=True)


@contextlib.contextmanager
def unfused() -> Iterator[None]:
    """Inside the block, every model runs its batch norms and ReLUs as separate ops.

    >>> import tinyres as tr
    >>> from tinyres import nn
    >>> with unfused():
    ...     type(batch_norm_relu(nn.BatchNorm2d(2), nn.ReLU(), tr.randn(3, 2, 4, 4)).grad_fn).__name__
    'Relu'
    """
    token = _fusing.set(False)
    try:
        yield
    finally:
        _fusing.reset(token)


def unobserved(*modules: Module) -> bool:
    """Whether running these modules' forwards as something else cannot be seen:
    no forward hook on any of them, and no instance-level ``forward``."""
    return all(not m._forward_hooks and "forward" not in vars(m) for m in modules)


def fusable(bn: Module, relu: Module, x: Tensor) -> bool:
    """Whether ``relu(bn(x))`` may run as the fused op (the rules in the module docstring)."""
    return (
        _fusing.get()
        and type(bn) is BatchNorm2d
        and type(relu) is ReLU
        and isinstance(x, Tensor)
        and x.ndim == 4
        and unobserved(bn, relu)
        and not kernels.learner_serves("batch_norm", "relu", "batch_norm_relu")
    )


def batch_norm_relu(bn: Module, relu: Module, x: Tensor) -> Tensor:
    """``relu(bn(x))``: one fused op when nothing observes the pair, else the two modules."""
    if fusable(bn, relu, x):
        return fused_batch_norm_relu(x, *bn.functional_arguments(x))
    return relu(bn(x))


def batch_norm_add_relu(bn: Module, relu: Module, x: Tensor, residual: Tensor) -> Tensor:
    """``relu(bn(x) + residual)`` (a residual block's end): one fused op when nothing observes
    the pieces and ``residual`` is a tensor of the output's shape and dtype, else as written."""
    if (fusable(bn, relu, x) and isinstance(residual, Tensor) and residual.shape == x.shape
            and residual.dtype == x.dtype):
        return fused_batch_norm_relu(x, *bn.functional_arguments(x), residual=residual)
    return relu(bn(x) + residual)
