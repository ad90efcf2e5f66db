r"""Direct convolution compiled with Numba, its partial sums held in vector registers.

The loop nest of ``tinyres.kernels.direct_reference`` (read that first: the tiles, the
packed weights, the one ``gather`` that serves the forward and the input gradient, the
weight gradient's chunks), written with the explicit 16 x float32 vector type of
``tinyres.kernels.simd``:

- **the microkernel** is the innermost loop of ``_gather``: per input channel c, one
  weight vector load, then for each of the tile's 6 pixels a broadcast of x[c] and one
  fused multiply-add into that pixel's accumulator. The 6 accumulators are local
  variables of the vector type, so LLVM keeps them in registers for the whole
  reduction (6 x 2 ymm registers with AVX2) and never touches memory for them;
- **borders inside the kernel**: a tap outside the image reads a row of zeros through
  its pixel's address (no padded copy); a tile at the end of the grid repeats its last
  pixel and stores only the real ones; a block of fewer than 16 channels is stored
  (and the gradient read) with masked vector operations, so nothing past an array's
  end is touched;
- **threads** (``tinyres.kernels.threads.parallel_for``, ``_share``): every thread, the
  caller included, takes the next unit of work until none is left: one class's tiles
  over a few samples for the forward and the input gradient, a chunk of samples for the
  weight gradient. A tile's outputs and a chunk's partial sums are its own, and the
  chunks are added in a fixed order afterwards, so every result is the same for any
  number of threads.

Only **float32** has compiled kernels (the vector type is 16 float32). Float64 inputs
run ``im2col_numba`` instead, through this module's ``forward``/``backward``, so a
float64 network under ``use_algorithm("direct")`` is correct and as fast as before.
So does float32 with ``NUMBA_DISABLE_JIT=1``: the vector type exists only in compiled code.

The kernels take integer addresses and check nothing: ``conv2d_forward`` and
``conv2d_backward`` check every shape, dtype and layout first (``_check``) and allocate
every array a kernel writes.

>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
>>> w = rng.standard_normal((20, 3, 3, 3)).astype(np.float32)
>>> from tinyres.kernels import conv_reference
>>> want = conv_reference.conv2d_forward(x.astype(float), w.astype(float), None, (2, 1), (1, 1), (1, 1))
>>> bool(np.allclose(conv2d_forward(x, w, None, (2, 1), (1, 1), (1, 1)), want, atol=1e-5))
True
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from tinyres.kernels import buffers, im2col_numba
from tinyres.kernels.direct_reference import (
    LANES,
    PIXELS,
    check_applies,
    chunks,
    class_filter,
    forward_taps,
    gradient_classes,
    pack,
    unpack,
)
from tinyres.kernels.layout import from_channels_last, to_channels_last
from tinyres.kernels.simd import (
    add,
    address,
    broadcast,
    fetch_add,
    fma,
    load,
    load_first,
    store,
    store_first,
    zeros,
)
from tinyres.kernels.sizes import Pair, expect, expect_positive, output_size
from tinyres.kernels.threads import get_num_threads, parallel_for

BYTES = 4  # one float32
VECTOR = LANES * BYTES
# Tiles per group: the group's pixels are run through every output-channel block in turn,
# so their input rows stay in L1/L2 while the blocks' weights (one block: kH*kW*C*64 bytes) are swept.
GROUP = 16
# Output pixels per band of the weight gradient: every tap's sweep runs over one band of
# rows (whole rows, about this many pixels: 16 KB of a 16-channel block of dy) before the
# next band, so the band stays in L1/L2 for all kH*kW taps instead of streaming the whole
# sample from L3 once per tap (the 7x7 stem's dy is 3.2 MB a sample: 19 -> GFLOP/s, see README).
BAND_PIXELS = 256


@njit(inline="always")
def _put(where, vector, lanes):  # pragma: no cover - compiled
    if lanes == LANES:
        store(where, vector)
    else:
        store_first(where, vector, lanes)


@njit(inline="always")
def _microkernel(x0, x1, x2, x3, x4, x5, w, count, acc0, acc1, acc2, acc3, acc4, acc5):  # pragma: no cover
    """acc_t += sum over k < count of x_t[k] * w[k] (a vector), for the 6 pixels' runs x_t."""
    for c in range(count):
        wv = load(w + c * VECTOR)
        acc0 = fma(broadcast(x0 + c * BYTES), wv, acc0)
        acc1 = fma(broadcast(x1 + c * BYTES), wv, acc1)
        acc2 = fma(broadcast(x2 + c * BYTES), wv, acc2)
        acc3 = fma(broadcast(x3 + c * BYTES), wv, acc3)
        acc4 = fma(broadcast(x4 + c * BYTES), wv, acc4)
        acc5 = fma(broadcast(x5 + c * BYTES), wv, acc5)
    return acc0, acc1, acc2, acc3, acc4, acc5


@njit(inline="always")
def _microkernel_rows(x0, x1, x2, x3, x4, x5, w, rows, count, row_stride,
                      acc0, acc1, acc2, acc3, acc4, acc5):  # pragma: no cover - compiled
    """``_microkernel`` over ``rows`` kernel rows: row i's runs start row_stride bytes after row i-1's,
    its weights right after row i-1's (the packed filter's rows are consecutive)."""
    for i in range(rows):
        acc0, acc1, acc2, acc3, acc4, acc5 = _microkernel(
            x0 + i * row_stride, x1 + i * row_stride, x2 + i * row_stride, x3 + i * row_stride,
            x4 + i * row_stride, x5 + i * row_stride, w + i * count * VECTOR, count,
            acc0, acc1, acc2, acc3, acc4, acc5)
    return acc0, acc1, acc2, acc3, acc4, acc5


@njit(nogil=True, cache=True)
def _gather(_run, _runs, counter, src, weights, classes, taps, zero_row, dst, Mh, Mw, step_h, step_w,
            samples):  # pragma: no cover - compiled
    """``direct_reference.gather`` for one or more *classes*, 6 pixels x 16 channels in registers.

    Class k (a row of ``classes``: grid_h, grid_w, first_h, first_w, kh, kw, where its packed
    filter starts in ``weights``, where its tap tables start in ``taps``) is one call of the
    reference's gather: the forward has one, the input gradient one per phase class. Work
    comes in *units*, one class over ``samples`` samples, in the order (samples, class), and
    every thread takes the next unit from ``counter`` until none is left (``_share``): the
    classes of a strided layer write a sample's dx while it is in cache (class after class
    over the whole batch, its input gradient was 8-15 % slower: benchmarks/README.md).

    Within a kernel row the taps (j, c) are one run of kW*C numbers in both the NHWC input and
    the packed weights (the tap tables rise by 1): one microkernel call instead of kW short
    ones where all 6 pixels' runs lie inside the image (*merged*; the 7x7 stem's C = 3 made
    its loop 3 long: 31 -> 59 GFLOP/s per CPU second, measured under load). Where every pixel's
    whole receptive field is inside (*interior*: most tiles), the tile's kH runs are one call
    with a row stride. The sums are added in the same order either way (taps i, j, channels).
    """
    N, Hs, Ws, Cs = src.shape
    Hd, Wd, Cd = dst.shape[1], dst.shape[2], dst.shape[3]
    blocks = -(-Cd // LANES)
    source, zero, out = address(src), address(zero_row), address(dst)
    pixel = Cs * BYTES
    n_, a_, b_ = np.empty(PIXELS, np.int64), np.empty(PIXELS, np.int64), np.empty(PIXELS, np.int64)
    row, at = np.empty(PIXELS, np.int64), np.empty(PIXELS, np.int64)
    K = classes.shape[0]
    units = K * -(-N // samples)
    while True:
        unit = fetch_add(address(counter), 1)
        if unit >= units:
            break
        k = unit % K
        Ha, Wa, first_h, first_w = classes[k, 0], classes[k, 1], classes[k, 2], classes[k, 3]
        kH, kW, w_at, t_at = classes[k, 4], classes[k, 5], classes[k, 6], classes[k, 7]
        off_h, off_w = taps[t_at : t_at + kH], taps[t_at + kH : t_at + kH + kW]
        packed = address(weights) + w_at * BYTES
        rising, rows_rising = True, True
        for j in range(1, kW):
            rising &= off_w[j] == off_w[j - 1] + 1
        for i in range(1, kH):
            rows_rising &= off_h[i] == off_h[i - 1] + 1
        n0 = unit // K * samples
        total = (min(N, n0 + samples) - n0) * Ha * Wa  # the unit's pixels
        tiles = -(-total // PIXELS)
        for group in range(0, tiles, GROUP):
            for block in range(blocks):
                lanes = min(LANES, Cd - block * LANES)
                for tile in range(group, min(tiles, group + GROUP)):
                    # The tile's pixels (n, a, b): one division, then counting.
                    f = tile * PIXELS
                    n = f // (Ha * Wa)
                    a = (f - n * Ha * Wa) // Wa
                    b = f - n * Ha * Wa - a * Wa
                    n += n0
                    whole_rows = rising
                    for t in range(PIXELS):
                        n_[t], a_[t], b_[t] = n, a, b  # past the unit's end: its last pixel again
                        whole_rows &= Mw * b + off_w[0] >= 0 and Mw * b + off_w[kW - 1] < Ws
                        if f + 1 < total:
                            f += 1
                            b += 1
                            if b == Wa:
                                b, a = 0, a + 1
                                if a == Ha:
                                    a, n = 0, n + 1
                    acc0 = acc1 = acc2 = acc3 = acc4 = acc5 = zeros()
                    interior = whole_rows and rows_rising
                    for t in range(PIXELS):
                        h = Mh * a_[t] + off_h[0]
                        interior &= h >= 0 and Mh * a_[t] + off_h[kH - 1] < Hs
                        at[t] = source + ((n_[t] * Hs + h) * Ws + Mw * b_[t] + off_w[0]) * pixel
                    if interior:  # every tap inside: one call over the kH rows, kW*C numbers each
                        acc0, acc1, acc2, acc3, acc4, acc5 = _microkernel_rows(
                            at[0], at[1], at[2], at[3], at[4], at[5], packed + block * kH * kW * Cs * VECTOR,
                            kH, kW * Cs, Ws * pixel, acc0, acc1, acc2, acc3, acc4, acc5)
                    for i in range(0 if interior else kH):
                        rows_inside, all_inside = False, True
                        for t in range(PIXELS):
                            h = Mh * a_[t] + off_h[i]
                            row[t] = source + (n_[t] * Hs + h) * Ws * pixel if 0 <= h < Hs else -1
                            rows_inside |= row[t] >= 0
                            all_inside &= row[t] >= 0
                        if not rows_inside:
                            continue
                        merged = whole_rows and all_inside  # the row's kW taps: one run of kW*C
                        for j in range(1 if merged else kW):
                            inside = False
                            for t in range(PIXELS):
                                v = Mw * b_[t] + off_w[j]
                                at[t] = row[t] + v * pixel if row[t] >= 0 and 0 <= v < Ws else zero
                                inside |= at[t] != zero
                            if not inside:
                                continue  # the whole tile is in the padding for this tap
                            acc0, acc1, acc2, acc3, acc4, acc5 = _microkernel(
                                at[0], at[1], at[2], at[3], at[4], at[5],
                                packed + ((block * kH + i) * kW + j) * Cs * VECTOR, kW * Cs if merged else Cs,
                                acc0, acc1, acc2, acc3, acc4, acc5)
                    for t in range(min(PIXELS, total - tile * PIXELS)):
                        h, v = first_h + step_h * a_[t], first_w + step_w * b_[t]
                        target = out + (((n_[t] * Hd + h) * Wd + v) * Cd + block * LANES) * BYTES
                        if t == 0:
                            _put(target, acc0, lanes)
                        elif t == 1:
                            _put(target, acc1, lanes)
                        elif t == 2:
                            _put(target, acc2, lanes)
                        elif t == 3:
                            _put(target, acc3, lanes)
                        elif t == 4:
                            _put(target, acc4, lanes)
                        else:
                            _put(target, acc5, lanes)


@njit(inline="always")
def _first_valid(kernel_offset, stride, padding):  # pragma: no cover - compiled
    """The first output index o >= 0 whose input index o s - p + i is >= 0."""
    return max(0, -((kernel_offset - padding) // stride))


@njit(nogil=True, cache=True)
def _weight_chunks(_run, _runs, counter, x, dy, bounds, sh, sw, ph, pw, partial):  # pragma: no cover
    """``direct_reference.weight_gradient``, 6 x 16 channels in registers, on every thread at once:
    each takes the next chunk of samples from ``counter`` until none is left (``_share``)."""
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    Ho, Wo, Co = dy.shape[1], dy.shape[2], dy.shape[3]
    blocks, kH, kW = partial.shape[1], partial.shape[2], partial.shape[3]
    xs, gs, ps = address(x), address(dy), address(partial)
    band = max(1, BAND_PIXELS // Wo)
    while True:
        k = fetch_add(address(counter), 1)
        if k >= len(bounds) - 1:
            break
        for n in range(bounds[k], bounds[k + 1]):
            for band_lo in range(0, Ho, band):
                for block in range(blocks):
                    lanes = min(LANES, Co - block * LANES)
                    for i in range(kH):
                        oh_lo = max(band_lo, _first_valid(i, sh, ph))
                        oh_hi = min(band_lo + band, Ho, (H - 1 + ph - i) // sh + 1)
                        if oh_lo >= oh_hi:
                            continue  # this kernel row reads only padding in this band
                        for j in range(kW):
                            ow_lo, ow_hi = _first_valid(j, sw, pw), min(Wo, (W - 1 + pw - j) // sw + 1)
                            for c0 in range(0, C, PIXELS):
                                # channels past C repeat the last one (not stored)
                                c1, c2, c3 = min(c0 + 1, C - 1), min(c0 + 2, C - 1), min(c0 + 3, C - 1)
                                c4, c5 = min(c0 + 4, C - 1), min(c0 + 5, C - 1)
                                acc0 = acc1 = acc2 = acc3 = acc4 = acc5 = zeros()
                                for oh in range(oh_lo, oh_hi):
                                    h, v = oh * sh - ph + i, ow_lo * sw - pw + j
                                    x_row = xs + ((n * H + h) * W + v) * C * BYTES
                                    g_row = gs + (((n * Ho + oh) * Wo + ow_lo) * Co + block * LANES) * BYTES
                                    for q in range(ow_hi - ow_lo):
                                        xq = x_row + q * sw * C * BYTES
                                        gq = g_row + q * Co * BYTES
                                        g = load(gq) if lanes == LANES else load_first(gq, lanes)
                                        acc0 = fma(broadcast(xq + c0 * BYTES), g, acc0)
                                        acc1 = fma(broadcast(xq + c1 * BYTES), g, acc1)
                                        acc2 = fma(broadcast(xq + c2 * BYTES), g, acc2)
                                        acc3 = fma(broadcast(xq + c3 * BYTES), g, acc3)
                                        acc4 = fma(broadcast(xq + c4 * BYTES), g, acc4)
                                        acc5 = fma(broadcast(xq + c5 * BYTES), g, acc5)
                                target = ps + ((((k * blocks + block) * kH + i) * kW + j) * C + c0) * VECTOR
                                count = min(PIXELS, C - c0)  # channels past C were repeats: not stored
                                store(target, add(load(target), acc0))
                                if count > 1:
                                    store(target + VECTOR, add(load(target + VECTOR), acc1))
                                if count > 2:
                                    store(target + 2 * VECTOR, add(load(target + 2 * VECTOR), acc2))
                                if count > 3:
                                    store(target + 3 * VECTOR, add(load(target + 3 * VECTOR), acc3))
                                if count > 4:
                                    store(target + 4 * VECTOR, add(load(target + 4 * VECTOR), acc4))
                                if count > 5:
                                    store(target + 5 * VECTOR, add(load(target + 5 * VECTOR), acc5))

def _check(x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """Every check the kernels rely on, before any runs; returns (Ho, Wo)."""
    expect("x", x, ndim=4, floating=True)
    expect("w", w, ndim=4, dtype=x.dtype)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"kernel argument w: expected {x.shape[1]} input channels, got shape {w.shape}")
    expect_positive("stride", stride)
    expect_positive("padding", padding, minimum=0)
    check_applies(w.shape, dilation)
    sizes = tuple(output_size(*a) for a in zip(x.shape[2:], w.shape[2:], stride, padding))
    if min(sizes) < 1:
        raise ValueError(f"kernel argument w: kernel {tuple(w.shape[2:])} does not fit input {x.shape}")
    return sizes


def _compiled(x: np.ndarray) -> bool:
    """Whether these kernels run (float32, JIT on), rather than im2col_numba's."""
    return x.dtype == np.float32 and not numba.config.DISABLE_JIT


def _classes(parts: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_gather``'s class table, tap tables and weights from [(grid_h, grid_w, first_h, first_w,
    off_h, off_w, packed filter)]: one row per class, the tables and filters one after another."""
    classes, taps, weights, w_at, t_at = [], [], [], 0, 0
    for grid_h, grid_w, first_h, first_w, off_h, off_w, packed in parts:
        kh, kw = packed.shape[1], packed.shape[2]
        classes.append((grid_h, grid_w, first_h, first_w, kh, kw, w_at, t_at))
        taps += [off_h, off_w]
        weights.append(packed.ravel())
        w_at, t_at = w_at + packed.size, t_at + kh + kw
    return (np.array(classes, dtype=np.int64), np.concatenate(taps).astype(np.int64),
            np.concatenate(weights))


def _samples(pixels: int) -> int:
    """Samples per unit of work: about 256 output pixels of a class or more (a few units per thread
    even for 8 x 8 planes, and a unit's last tile, which repeats pixels, is a small part of it)."""
    return max(1, 256 // max(pixels, 1))


def _share(kernel, units: int, *args: object) -> None:
    """``kernel(run, runs, counter, *args)`` on up to ``get_num_threads()`` threads at once (the caller is
    one), sharing ``units`` units of work through ``counter``: each thread takes the next unit
    (``simd.fetch_add``) until none is left.

    Why not a fixed half each: the pool's thread starts its half later than the caller (it is
    woken, then waits for the GIL to enter the kernel), and on a shared machine either thread
    may lose its core for a while; with fixed halves the other then waits (the lock waits in
    ``bench_models.py --profile``), here it takes the units left. Which thread computes a unit
    does not change its numbers: a tile's outputs, or a chunk's partial sums, are its own.
    """
    counter = np.zeros(1, np.int64)
    parallel_for(kernel, min(get_num_threads(), units), counter, *args)


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """y = conv2d(x, w) + b; channels-last output (an NCHW view), as the other Numba convolutions'."""
    Ho, Wo = _check(x, w, stride, padding, dilation)
    if b is not None:
        expect("b", b, shape=(w.shape[0],), dtype=x.dtype)
    if not _compiled(x):
        return im2col_numba.conv2d_forward(x, w, b, stride, padding, dilation)
    N, C, _, _ = x.shape
    C_out, _, kH, kW = w.shape
    y = buffers.empty((N, Ho, Wo, C_out), np.float32)
    Mh, off_h = forward_taps(kH, stride[0], padding[0])
    Mw, off_w = forward_taps(kW, stride[1], padding[1])
    classes, taps, weights = _classes([(Ho, Wo, 0, 0, off_h, off_w, pack(w))])
    samples = _samples(Ho * Wo)
    _share(_gather, len(classes) * -(-N // samples), to_channels_last(x), weights, classes, taps,
           np.zeros(C, np.float32), y, Mh, Mw, 1, 1, samples)
    if b is not None:
        y += b
    return from_channels_last(y)


def conv2d_backward(
    grad: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair, dilation: Pair,
    input_grad: bool = True, bias_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dw, db): dx by the gather kernel over the stride's phase classes, dw chunk by chunk."""
    Ho, Wo = _check(x, w, stride, padding, dilation)
    N, C, H, W = x.shape
    C_out, _, kH, kW = w.shape
    expect("grad", grad, shape=(N, C_out, Ho, Wo), dtype=x.dtype)
    if not _compiled(x):
        return im2col_numba.conv2d_backward(grad, x, w, stride, padding, dilation, input_grad, bias_grad)
    dy, x_nhwc = to_channels_last(grad), to_channels_last(x)
    bounds = chunks(N)
    partial = np.zeros((len(bounds) - 1, -(-C_out // LANES), kH, kW, C, LANES), dtype=np.float32)
    _share(_weight_chunks, len(bounds) - 1, x_nhwc, dy, bounds, *stride, *padding, partial)
    dw = unpack(partial.sum(axis=0), C_out)  # chunks added in order: the same for any thread count
    db = dy.reshape(-1, C_out).sum(axis=0) if bias_grad else None
    if not input_grad:
        return None, dw, db
    dx = buffers.empty((N, H, W, C), np.float32)
    swapped, parts = pack(w.transpose(1, 0, 2, 3)), []  # packed once, sliced for every class
    # Each phase class: a stride-1 gather of dy with the class's sub-filter (direct_reference);
    # its offsets rise by 1, so its taps merge into runs and its interior tiles into one call.
    for r_h, count_h, taps_h, off_h in gradient_classes(H, kH, stride[0], padding[0]):
        for r_w, count_w, taps_w, off_w in gradient_classes(W, kW, stride[1], padding[1]):
            if len(taps_h) == 0 or len(taps_w) == 0:  # stride > kernel: no tap reaches these pixels
                dx[:, r_h :: stride[0], r_w :: stride[1]] = 0
            elif count_h and count_w:
                sub = class_filter(swapped, taps_h, taps_w)
                parts.append((count_h, count_w, r_h, r_w, off_h, off_w, sub))
    if parts:
        classes, taps, weights = _classes(parts)
        samples = _samples(H * W // (stride[0] * stride[1]))
        _share(_gather, len(classes) * -(-N // samples), dy, weights, classes, taps,
               np.zeros(C_out, np.float32), dx, 1, 1, *stride, samples)
    return from_channels_last(dx), dw, db


def forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[np.ndarray, tuple]:
    """The tier protocol's forward: (y, saved). Float64 runs im2col_numba's (saved says so)."""
    if not _compiled(x):
        y, saved = im2col_numba.forward(x, w, b, stride, padding, dilation)
        return y, (im2col_numba, saved)
    x = from_channels_last(to_channels_last(x))  # one copy at most, kept for the backward
    return conv2d_forward(x, w, b, stride, padding, dilation), (None, (x, w, stride, padding, dilation))


def backward(grad: np.ndarray, saved: tuple, input_grad: bool, bias_grad: bool) -> tuple:
    """(dx or None, dw, db or None) from ``forward``'s saved object."""
    fallback, inner = saved
    if fallback is not None:
        return fallback.backward(grad, inner, input_grad, bias_grad)
    return conv2d_backward(grad, *inner, input_grad, bias_grad)
