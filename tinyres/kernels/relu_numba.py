"""ReLU's backward as one compiled pass, for large arrays.

ReLU and addition do one arithmetic step per element, so memory bandwidth limits
them and a NumPy ufunc is already close to it: ``benchmarks/bench_batchnorm.py
--sizes`` found Numba kernels for ``max(x, 0)`` and ``x + y`` no faster than NumPy on
this 2-core machine, so those stay NumPy. The backward is different: NumPy needs
two passes (``z > 0`` makes a mask, then ``grad * mask``), the kernel one, and that
measured faster for arrays from about 2^18 elements (``FAST_SIZE``); smaller ones,
and integer or mixed-dtype gradients, take ``relu_reference``. The result equals
NumPy's exactly.

>>> import numpy as np
>>> z = np.array([0.0, 0.5, 2.0], dtype=np.float32)   # a ReLU output
>>> relu_backward(np.full(3, 3.0, np.float32), z)
array([0., 3., 3.], dtype=float32)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tinyres.kernels import buffers, relu_reference
from tinyres.kernels.layout import from_channels_last, is_channels_last, to_channels_last
from tinyres.kernels.sizes import expect
from tinyres.kernels.threads import parallel_for

# From this many elements on, ReLU's backward runs as one compiled pass; below it
# NumPy's two passes are quicker than a parallel launch. Measured with
# benchmarks/bench_batchnorm.py --sizes (see benchmarks/README.md).
FAST_SIZE = 1 << 18

def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, saved) as ``relu_reference.forward``: one ufunc pass (a compiled one is no faster),
    but into a kept block (``buffers``) in x's layout.

    ``np.maximum`` alone allocates a fresh output, which glibc maps anew on every step:
    1.6-1.8 ms a call against 0.63-0.67 into a kept block, for a (64, 16, 32, 32) float32
    channels-last array in a step-like loop (one thread, load 9); in ``bench_models.py
    --profile`` that put ``relu_reference.forward`` at 7 ms of a ResNet-20 step.
    """
    if is_channels_last(x):
        out = from_channels_last(buffers.empty(x.transpose(0, *range(2, x.ndim), 1).shape, x.dtype))
    elif x.flags.c_contiguous:
        out = buffers.empty_like(x)
    else:  # another layout: NumPy picks the output's
        return relu_reference.forward(x)
    np.maximum(x, x.dtype.type(0), out=out)
    return out, out


@njit(nogil=True, cache=True)
def _relu_backward(start, stop, grad, z, out):  # pragma: no cover - compiled
    # On slices of the run, LLVM turns the branch into a vectorised select: indexing the
    # whole arrays at start..stop it did not, 10.9 ms against 1.4 ms on 2**20 float32s.
    g, zz, o = grad[start:stop], z[start:stop], out[start:stop]
    for i in range(g.size):
        o[i] = g[i] if zz[i] > 0 else 0


def backward(grad: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The tier's backward: the compiled pass for large float32 arrays, else the reference.

    float64 is not the fast path (gradient checks): NumPy's two passes serve it, and the
    cold compile of every kernel is 0.2 s shorter (issue 28)."""
    if grad.size >= FAST_SIZE and grad.dtype == z.dtype == np.float32:
        return relu_backward(grad, z)
    return relu_reference.backward(grad, z)


def relu_backward(grad: np.ndarray, z: np.ndarray) -> np.ndarray:
    """grad where the forward output z is positive, else 0 (any layout, same shape).

    A channels-last z (NHWC memory viewed as NCHW, as convolutions and batch norm
    return it) is walked in its own memory order and the result keeps that layout,
    so the convolution that receives it needs no copy.
    """
    expect("z", z, floating=True)
    expect("grad", grad, shape=z.shape, dtype=z.dtype)
    if is_channels_last(z):
        grad, z = to_channels_last(grad), to_channels_last(z)
        return from_channels_last(_relu_backward_flat(grad, z))
    return _relu_backward_flat(np.ascontiguousarray(grad), np.ascontiguousarray(z))


def _relu_backward_flat(grad: np.ndarray, z: np.ndarray) -> np.ndarray:
    out = buffers.empty_like(grad)
    parallel_for(_relu_backward, grad.size, grad.reshape(-1), z.reshape(-1), out.reshape(-1))
    return out
