r"""A 16 x float32 vector value for Numba kernels: load, store, broadcast, fused multiply-add.

Numba compiles a loop nest to LLVM and leaves vectorisation to LLVM's auto-vectoriser,
which picks *one* loop to widen. In a convolution that is often the wrong one (the
pixel loop, or none), and it will not keep a tile of partial sums in registers across
the reduction loop. Here the kernel says it itself: ``f32x16`` is an LLVM
``<16 x float>``, and the functions below are single LLVM instructions on it, written
with ``numba.extending.intrinsic`` (a Python function that emits LLVM IR where it is
called):

==================================  =========================================================
``zeros()``                         ``<16 x float> zeroinitializer``
``load(address)``                   16 consecutive float32 at ``address`` (any alignment)
``load_first(address, n)``          the first n of them, zeros after (``llvm.masked.load``)
``broadcast(address)``              the float32 at ``address`` in all 16 lanes
``fma(a, b, c)``                    a * b + c lane by lane, one rounding (``llvm.fma.v16f32``)
``add(a, b)``                       a + b lane by lane
``store(address, v)``               16 float32 to ``address``
``store_first(address, v, n)``      the first n lanes only (``llvm.masked.store``)
``address(array)``                  where an array's first element is, as an integer
``fetch_add(address, n)``           the int64 at ``address`` before adding n to it, atomically
==================================  =========================================================

``fma_peak()`` measures what one core can do with them: the ceiling every kernel's
GFLOP/s is compared with (``benchmarks/bench_conv.py --kernels``, lesson 15).

LLVM lowers the type to what the CPU has: one zmm register with AVX-512, two ymm with
AVX2 (this machine, an AMD EPYC with AVX2 + FMA: 16 ymm registers, so 8 such values
at most), four NEON registers on ARM. Addresses are plain integers (bytes): a kernel
computes them from shapes checked *before* it runs, and nothing here checks bounds, so
these functions are for the kernels in this package only (``direct_numba``), never for
user input.

Numba caches a compiled kernel by its own source file: after editing this module,
clear ``__pycache__`` (or ``NUMBA_CACHE_DIR``) so kernels using it are rebuilt.

>>> import numpy as np
>>> from numba import njit
>>> @njit
... def axpy(a, x, y):          # y[:16] = a[0] * x[:16] + y[:16]
...     v = fma(broadcast(address(a)), load(address(x)), load(address(y)))
...     store(address(y), v)
>>> a, x, y = np.float32([2]), np.arange(16, dtype=np.float32), np.ones(16, dtype=np.float32)
>>> axpy(a, x, y); y[:4].tolist()
[1.0, 3.0, 5.0, 7.0]
"""

from __future__ import annotations

import time

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model

LANES = 16
_FLOAT = ir.FloatType()
_VECTOR = ir.VectorType(_FLOAT, LANES)


class F32x16(types.Type):
    """Numba's type of an LLVM ``<16 x float>`` value (lives in registers, never in an array)."""

    def __init__(self) -> None:
        super().__init__(name="f32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _pointer(builder, address_value, pointee):
    return builder.inttoptr(address_value, pointee.as_pointer())


def _splat(builder, vector):
    """Lane 0 of ``vector`` copied into all 16 lanes."""
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
    return builder.shuffle_vector(vector, vector, zeros)


def _lane_mask(builder, n):
    """<16 x i1>: lane l is on when l < n (n an intp)."""
    lanes = ir.Constant(ir.VectorType(n.type, LANES), [ir.Constant(n.type, k) for k in range(LANES)])
    splat = builder.insert_element(ir.Constant(ir.VectorType(n.type, LANES), ir.Undefined),
                                   n, ir.Constant(ir.IntType(32), 0))
    return builder.icmp_unsigned("<", lanes, _splat(builder, splat))


@intrinsic
def address(typingctx, array):
    """The integer address of ``array``'s first element."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, context.get_value_type(types.intp))

    return types.intp(array), codegen


@intrinsic
def zeros(typingctx):
    """A vector of 16 zeros."""
    return f32x16(), lambda context, builder, signature, args: ir.Constant(_VECTOR, None)


@intrinsic
def load(typingctx, where):
    """The 16 float32 starting at byte address ``where``."""
    if not isinstance(where, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_pointer(builder, args[0], _VECTOR), align=4)

    return f32x16(types.intp), codegen


@intrinsic
def broadcast(typingctx, where):
    """The float32 at byte address ``where``, in every lane."""
    if not isinstance(where, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = builder.load(_pointer(builder, args[0], _FLOAT), align=4)
        lane0 = ir.Constant(ir.IntType(32), 0)
        return _splat(builder, builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, lane0))

    return f32x16(types.intp), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c, lane by lane, rounded once."""
    if not all(t == f32x16 for t in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), "llvm.fma.v16f32")
        return builder.call(function, args)

    return f32x16(f32x16, f32x16, f32x16), codegen


@intrinsic
def add(typingctx, a, b):
    """a + b, lane by lane."""
    if not (a == f32x16 and b == f32x16):
        return None
    return f32x16(f32x16, f32x16), lambda context, builder, signature, args: builder.fadd(*args)


@intrinsic
def store(typingctx, where, vector):
    """Write the 16 lanes of ``vector`` to byte address ``where``."""
    if not (isinstance(where, types.Integer) and vector == f32x16):
        return None

    def codegen(context, builder, signature, args):
        builder.store(args[1], _pointer(builder, args[0], _VECTOR), align=4)
        return context.get_dummy_value()

    return types.none(types.intp, f32x16), codegen


@intrinsic
def load_first(typingctx, where, n):
    """The first ``n`` float32 at ``where`` in lanes 0..n-1, zeros in the others; reads nothing past them."""
    if not (isinstance(where, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _pointer(builder, args[0], _VECTOR)
        arguments = [ptr.type, ir.IntType(32), ir.VectorType(ir.IntType(1), LANES), _VECTOR]
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, arguments), "llvm.masked.load.v16f32.p0")
        mask = _lane_mask(builder, context.cast(builder, args[1], signature.args[1], types.intp))
        return builder.call(function, [ptr, ir.Constant(ir.IntType(32), 4), mask, ir.Constant(_VECTOR, None)])

    return f32x16(types.intp, types.intp), codegen


@intrinsic
def store_first(typingctx, where, vector, n):
    """Write lanes 0..n-1 of ``vector`` to ``where``; memory after them is not touched."""
    if not (isinstance(where, types.Integer) and vector == f32x16 and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _pointer(builder, args[0], _VECTOR)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_VECTOR, ptr.type, ir.IntType(32),
                                                            ir.VectorType(ir.IntType(1), LANES)]),
            "llvm.masked.store.v16f32.p0")
        mask = _lane_mask(builder, context.cast(builder, args[2], signature.args[2], types.intp))
        builder.call(function, [args[1], ptr, ir.Constant(ir.IntType(32), 4), mask])
        return context.get_dummy_value()

    return types.none(types.intp, f32x16, types.intp), codegen


@intrinsic
def fetch_add(typingctx, where, n):
    """Add ``n`` to the int64 at byte address ``where`` as one atomic step; return the value before.

    Threads sharing work take the next piece with it (``direct_numba``): each piece goes to
    exactly one thread, whichever asks first.
    """
    if not (isinstance(where, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        value = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", _pointer(builder, args[0], i64), value, "monotonic")

    return types.int64(types.intp, n), codegen


# ---- the peak a kernel is measured against ---------------------------------------------


@njit(nogil=True, cache=True)
def _multiply_adds(iterations, data):  # pragma: no cover - compiled
    """5 independent accumulators (10 ymm registers with AVX2), one fma each per iteration."""
    w, x = load(address(data)), load(address(data) + LANES * 4)
    a0, a1, a2, a3, a4 = zeros(), zeros(), zeros(), zeros(), zeros()
    for _ in range(iterations):
        a0 = fma(w, x, a0)
        a1 = fma(x, w, a1)
        a2 = fma(w, x, a2)
        a3 = fma(x, w, a3)
        a4 = fma(w, x, a4)
    store(address(data), add(add(add(a0, a1), add(a2, a3)), a4))  # so the loop is not dropped


def fma_peak(iterations: int = 2_000_000, repeats: int = 5) -> tuple[float, float]:
    """(GFLOP/s by wall time, GFLOP/s per second of this thread's CPU time): one core's
    multiply-add peak, the best of ``repeats`` runs.

    Five independent accumulators: enough to cover the FMA unit's latency (4 cycles, two
    units on this machine's cores: 8 vectors of 8 floats in flight) without spilling
    registers, which a version with 10 accumulators did (20 ymm > 16) at 40 % of this.
    The CPU-time figure is the one that survives a busy machine (it counts only the
    cycles this thread ran); each fma is 2 x 16 floating-point operations.
    """
    data = np.full(2 * LANES, 1e-9, dtype=np.float32)
    _multiply_adds(10, data)  # compile (or load) first
    flops = 5 * iterations * LANES * 2
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        _multiply_adds(iterations, data)
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return flops / min(wall) / 1e9, flops / max(min(cpu), 1e-9) / 1e9
