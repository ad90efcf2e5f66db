"""``tinyres.testing``: test your own ops as tinyres tests its own.

One implementation, used by the library's test suite, its op table and the exercise
grader alike:

- ``check_op(fn, *inputs)``: the op table's properties on any function of Tensors or a
  custom ``tinyres.autograd.Function``'s ``apply`` (gradients against central
  differences in float64 under a random upstream gradient, float32 against a float64
  truth, dtypes kept, inputs unchanged, saved tensors guarded against in-place
  changes); see ``tinyres.testing.properties``.
- ``check_saved_tensors(fn, *inputs, over_declared=False)``: the saved-tensors property
  alone, over every tensor of the graph; ``over_declared=True`` also fails a tensor saved
  but never read by backward (the op table's ``tests/test_saved_declarations.py``).
- ``gradcheck(fn, inputs)``: the finite-difference check alone (``tinyres.gradcheck`` is
  the same function).
- ``assert_close(actual, expected)``: ``torch.testing.assert_close`` for tinyres.
- ``tinyres.testing.strategies``: hypothesis strategies drawing Tensors (shapes,
  non-contiguous layouts, values kept off kinks), broadcastable shape pairs and
  convolution arguments. A submodule of its own, because it imports hypothesis (a test
  dependency); nothing here does.
- ``tinyres.testing.op_table``: the op table, one small kink-free case per built-in op.

Inside a hypothesis test a failing property is shrunk to its smallest example:

>>> from hypothesis import given, settings
>>> from tinyres.testing.strategies import tensors
>>> @settings(max_examples=5, deadline=None)
... @given(x=tensors(shape=(2, 3)))
... def test_tanh(x):
...     check_op(lambda t: t.tanh(), x)
>>> test_tanh()
"""

from tinyres.testing.compare import assert_close
from tinyres.testing.gradcheck import GradcheckError, check_gradients, gradcheck
from tinyres.testing.properties import OpCheckError, check_op, check_saved_tensors

__all__ = [
    "GradcheckError",
    "OpCheckError",
    "assert_close",
    "check_gradients",
    "check_op",
    "check_saved_tensors",
    "gradcheck",
]
