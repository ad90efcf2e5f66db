"""ReLU's backward as one compiled pass, for large arrays.

ReLU and addition do one arithmetic step per element, so memory bandwidth limits
them and a NumPy ufunc is already close to it: ``benchmarks/bench_batchnorm.py
--sizes`` found Numba kernels for ``max(x, 0)`` and ``x + y`` no faster than NumPy on
this 2-core machine, so those stay NumPy. The backward is different: NumPy needs
two passes (``z > 0`` makes a mask, then ``grad * mask``), the kernel one, and that
measured faster for arrays from about 2^18 elements (``FAST_SIZE`` in
``tinyres.ops.elementwise``). The result equals NumPy's exactly.

>>> import numpy as np
>>> z = np.array([0.0, 0.5, 2.0], dtype=np.float32)   # a ReLU output
>>> relu_backward(np.full(3, 3.0, np.float32), z)
array([0., 3., 3.], dtype=float32)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _relu_backward(grad, z, out):  # pragma: no cover - compiled
    for i in prange(grad.size):
        out[i] = grad[i] if z[i] > 0 else 0


def relu_backward(grad: np.ndarray, z: np.ndarray) -> np.ndarray:
    """grad where the forward output z is positive, else 0 (any layout, same shape).

    A channels-last z (NHWC memory viewed as NCHW, as convolutions and batch norm
    return it) is walked in its own memory order and the result keeps that layout,
    so the convolution that receives it needs no copy.
    """
    last = z.ndim == 4 and not z.flags.c_contiguous and z.transpose(0, 2, 3, 1).flags.c_contiguous
    if last:
        grad, z = grad.transpose(0, 2, 3, 1), z.transpose(0, 2, 3, 1)
    grad, z = np.ascontiguousarray(grad), np.ascontiguousarray(z)
    out = np.empty_like(grad)
    _relu_backward(grad.reshape(-1), z.reshape(-1), out.reshape(-1))
    return out.transpose(0, 3, 1, 2) if last else out
