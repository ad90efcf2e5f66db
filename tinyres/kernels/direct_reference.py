r"""Direct convolution, blocked for registers: the loop nest of ``direct_numba``, in readable NumPy.

im2col copies every receptive field into a matrix, then multiplies; Winograd transforms
tiles, then multiplies. A *direct* convolution reads the input where it lies. What makes
it fast is how the sum is cut up, so that the partial sums of a small **tile** of
outputs stay in the CPU's vector registers for the whole reduction:

- **Channels last** (NHWC): one pixel's channels are contiguous, so the input numbers a
  tap needs are one run of C values per pixel.
- **Weights packed** ``[C_out/16][kH][kW][C_in][16]`` (``pack``; output channels padded
  with zero filters to a multiple of 16): for a tap (i, j) and input channel c, the
  weights of 16 output channels are 16 consecutive numbers, one vector.
- **A tile** is ``PIXELS`` = 6 output pixels x 16 output channels: 6 vectors of partial
  sums. For each tap and each input channel c, the kernel loads one weight vector and,
  for each of the 6 pixels, multiplies it by that pixel's x[c] (one number in all 16
  lanes, a *broadcast*) and adds: 6 fused multiply-adds per vector load. Over the C
  channels of one tap that is ``acc += rows @ w_packed[block, i, j]`` with ``rows`` the
  6 pixels' (6, C) input values: exactly the line marked "the microkernel" below.
- **Borders inside the kernel**: a tap that falls in the padding reads a row of zeros
  (``zero_row``), so no padded copy of the input is made.

**One loop nest for the forward and the input gradient.** ``gather`` computes, for
every destination pixel d of a grid, ``dst[d] = sum over taps (i, j) and channels of
src[M d + off(i, j)] w[i, j]``. The forward is the case M = stride, off = (i - p, j - p).
The input gradient (``dx[h] = sum over i with h + p - i = oh s of dy[oh] w[i]``) splits
dx's pixels into s x s *phase classes* (h mod s, v mod s): within one class r only the
taps with ``(r + p - i) % s == 0`` contribute and ``oh = a + (r + p - i) / s`` for the
class's a-th pixel. Taken in falling i those offsets rise by 1, so a class is a
*stride-1* gather (M = 1) of dy with its own small sub-filter: those taps of the filter,
its channel axes swapped (packed ``[C_in/16][kh][kw][C_out][16]``; for a 3x3 stride-2
layer the four classes' sub-filters are 1x1, 1x2, 2x1 and 2x2). No zero-stuffed
gradient, no tap that contributes nothing, and in every class consecutive taps read
consecutive pixels, which the compiled kernel runs as one stretch of memory.

**The weight gradient** ``dw[o, c, i, j] = sum over pixels of dy[o] x[c]`` is a
reduction over pixels: its tile is 6 input channels x 16 output channels, the
reduction runs over one sample's pixels for each tap (the compiled kernel over one band
of rows at a time, to stay in cache), and each tile is added to a partial sum of its
*chunk* of samples. The chunks (``chunks``) depend on the batch
size only, and are added in a fixed order: the result does not depend on how many
threads ran them.

This module is the oracle of ``direct_numba`` (same tiles, same packing, same tap
tables) and its readable form; it is far too slow for real layers. Float32 or float64.

>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((20, 3, 3, 3))
>>> from tinyres.kernels import conv_reference
>>> want = conv_reference.conv2d_forward(x, w, None, (2, 1), (1, 1), (1, 1))
>>> bool(np.allclose(conv2d_forward(x, w, None, (2, 1), (1, 1), (1, 1)), want))
True
"""

from __future__ import annotations

import numpy as np

from tinyres.kernels.conv_reference import protocol
from tinyres.kernels.sizes import Pair, output_size

LANES = 16  # output channels per vector: one <16 x float> (simd.py)
# Output pixels per tile: 6 x 2 ymm accumulators + 2 for the weights + 1 broadcast = 15 of AVX2's 16.
PIXELS = 6
CHUNKS = 8  # the weight gradient's partial sums: the batch cut into at most this many runs


def check_applies(w_shape: tuple[int, ...], dilation: Pair) -> None:
    """Direct convolution here is undilated (``conv_algorithm`` sends dilated layers to im2col)."""
    if tuple(dilation) != (1, 1):
        raise ValueError(f"direct: needs dilation (1, 1), got {tuple(dilation)}")


def pack(w: np.ndarray) -> np.ndarray:
    """(C_out, C, kH, kW) -> (ceil(C_out/16), kH, kW, C, 16), output channels zero-padded to 16."""
    C_out, C, kH, kW = w.shape
    blocks = -(-C_out // LANES)
    padded = np.zeros((blocks * LANES, C, kH, kW), dtype=w.dtype)
    padded[:C_out] = w
    return np.ascontiguousarray(padded.reshape(blocks, LANES, C, kH, kW).transpose(0, 3, 4, 2, 1))


def forward_taps(kernel: int, stride: int, padding: int) -> tuple[int, np.ndarray]:
    """(M, off) of the forward along one axis: source index = M d + off[i] = d s + i - p."""
    return stride, np.arange(kernel, dtype=np.int64) - padding


Classes = list[tuple[int, int, np.ndarray, np.ndarray]]


def gradient_classes(size: int, kernel: int, stride: int, padding: int) -> Classes:
    """The input gradient's phase classes along one axis: (r, count, taps, off) for r = 0..stride-1.

    dx index h = r + s a (a < count) receives from the kernel indices ``taps`` (those with
    (r + p - i) % s == 0, in falling order) the gradient at oh = a + off[k], with
    off[k] = (r + p - taps[k]) / s: rising by 1 from one tap to the next.
    """
    classes = []
    for r in range(stride):
        count = len(range(r, size, stride))
        taps = np.array([i for i in range(kernel - 1, -1, -1) if (r + padding - i) % stride == 0],
                        dtype=np.int64)
        classes.append((r, count, taps, (r + padding - taps) // stride))
    return classes


def class_filter(swapped: np.ndarray, taps_h: np.ndarray, taps_w: np.ndarray) -> np.ndarray:
    """A phase class's sub-filter for the input gradient: the taps ``taps_h`` x ``taps_w`` of
    ``swapped`` = pack(w.transpose(1, 0, 2, 3)), (ceil(C/16), kH, kW, C_out, 16), in that order."""
    return np.ascontiguousarray(swapped[:, taps_h][:, :, taps_w])


def chunks(N: int) -> np.ndarray:
    """Sample boundaries of the weight gradient's chunks: [0, ..., N], at most CHUNKS runs."""
    parts = min(N, CHUNKS)
    return np.array([k * N // parts for k in range(parts + 1)] if parts else [0], dtype=np.int64)


def gather(src: np.ndarray, packed: np.ndarray, dst: np.ndarray, grid: Pair, M: Pair,
           off_h: np.ndarray, off_w: np.ndarray, first: Pair, step: Pair) -> None:
    """dst[n, first + step * (a, b)] = sum over taps of src[n, M (a, b) + off] @ packed[:, tap].

    ``src`` (N, Hs, Ws, Cs) and ``dst`` (N, Hd, Wd, Cd) are channels last; ``packed`` is
    (ceil(Cd/16), kH, kW, Cs, 16); the grid (Ha, Wa) of destination pixels (a, b) is cut
    into tiles of PIXELS consecutive pixels (a tile may span rows and samples; the last
    one repeats its final pixel and stores only the real ones).
    """
    N, Hs, Ws, Cs = src.shape
    Cd = dst.shape[3]
    blocks, kH, kW = packed.shape[:3]
    zero_row = np.zeros(Cs, dtype=src.dtype)
    total = N * grid[0] * grid[1]
    for start in range(0, total, PIXELS):
        pixels = [min(start + t, total - 1) for t in range(PIXELS)]  # flat (n, a, b) of the tile
        n, ab = np.divmod(pixels, grid[0] * grid[1])
        a, b = np.divmod(ab, grid[1])
        for block in range(blocks):
            acc = np.zeros((PIXELS, LANES), dtype=src.dtype)  # in registers, in the compiled kernel
            for i in range(kH):
                h = M[0] * a + off_h[i]
                for j in range(kW):
                    v = M[1] * b + off_w[j]
                    inside = (h >= 0) & (h < Hs) & (v >= 0) & (v < Ws)
                    rows = np.stack([src[n[t], h[t], v[t]] if inside[t] else zero_row for t in range(PIXELS)])
                    acc += rows @ packed[block, i, j]  # the microkernel: C broadcasts x vectors, per pixel
            stored = len(range(start, min(start + PIXELS, total)))
            lanes = min(LANES, Cd - block * LANES)
            for t in range(stored):
                dst[n[t], first[0] + step[0] * a[t], first[1] + step[1] * b[t],
                    block * LANES : block * LANES + lanes] = acc[t, :lanes]


def weight_gradient(x: np.ndarray, dy: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """dw packed (ceil(C_out/16), kH, kW, C, 16): tiles of 6 input x 16 output channels, chunk by chunk."""
    N, H, W, C = x.shape
    _, Ho, Wo, C_out = dy.shape
    blocks = -(-C_out // LANES)
    bounds = chunks(N)
    partial = np.zeros((len(bounds) - 1, blocks, *kernel, C, LANES), dtype=x.dtype)
    for k in range(len(bounds) - 1):
        for n in range(bounds[k], bounds[k + 1]):
            for block in range(blocks):
                lanes = min(LANES, C_out - block * LANES)
                for i in range(kernel[0]):
                    oh = [o for o in range(Ho) if 0 <= o * stride[0] - padding[0] + i < H]
                    for j in range(kernel[1]):
                        ow = [o for o in range(Wo) if 0 <= o * stride[1] - padding[1] + j < W]
                        h = np.array(oh, dtype=np.int64) * stride[0] - padding[0] + i
                        v = np.array(ow, dtype=np.int64) * stride[1] - padding[1] + j
                        g = np.zeros((len(oh), len(ow), LANES), dtype=x.dtype)
                        g[..., :lanes] = dy[n][np.ix_(oh, ow)][..., block * LANES : block * LANES + lanes]
                        xs = x[n][np.ix_(h, v)]  # (pixels, C)
                        for c0 in range(0, C, PIXELS):  # a tile: 6 input channels x 16 output channels
                            cs = slice(c0, min(c0 + PIXELS, C))
                            partial[k, block, i, j, cs] += np.einsum("hwc,hwl->cl", xs[..., cs], g)
    return partial.sum(axis=0)  # chunks added in order: the same result for any thread count


def unpack(packed: np.ndarray, C_out: int) -> np.ndarray:
    """Inverse of ``pack``: (blocks, kH, kW, C, 16) -> (C_out, C, kH, kW)."""
    blocks, kH, kW, C, _ = packed.shape
    return np.ascontiguousarray(packed.transpose(0, 4, 3, 1, 2).reshape(blocks * LANES, C, kH, kW)[:C_out])


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """y = conv2d(x, w) + b by the blocked direct loop nest."""
    check_applies(w.shape, dilation)
    N, _, H, W = x.shape
    C_out, _, kH, kW = w.shape
    Ho, Wo = (output_size(*a) for a in zip((H, W), (kH, kW), stride, padding))
    y = np.empty((N, Ho, Wo, C_out), dtype=x.dtype)
    Mh, off_h = forward_taps(kH, stride[0], padding[0])
    Mw, off_w = forward_taps(kW, stride[1], padding[1])
    gather(x.transpose(0, 2, 3, 1), pack(w), y, (Ho, Wo), (Mh, Mw), off_h, off_w, (0, 0), (1, 1))
    if b is not None:
        y += b
    return y.transpose(0, 3, 1, 2)


def conv2d_backward(
    grad: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair, dilation: Pair,
    input_grad: bool = True, bias_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dw, db): dx by ``gather`` over the phase classes, dw by ``weight_gradient``."""
    check_applies(w.shape, dilation)
    N, C, H, W = x.shape
    C_out, _, kH, kW = w.shape
    dy, x_nhwc = grad.transpose(0, 2, 3, 1), x.transpose(0, 2, 3, 1)
    dw = unpack(weight_gradient(x_nhwc, dy, (kH, kW), stride, padding), C_out)
    db = grad.sum(axis=(0, 2, 3)) if bias_grad else None
    if not input_grad:
        return None, dw, db
    dx = np.empty((N, H, W, C), dtype=x.dtype)
    swapped = pack(w.transpose(1, 0, 2, 3))  # (C/16, kH, kW, C_out, 16): dx's channels in the lanes
    for r_h, count_h, taps_h, off_h in gradient_classes(H, kH, stride[0], padding[0]):
        for r_w, count_w, taps_w, off_w in gradient_classes(W, kW, stride[1], padding[1]):
            if len(taps_h) == 0 or len(taps_w) == 0:  # stride > kernel: no tap reaches these pixels
                dx[:, r_h :: stride[0], r_w :: stride[1]] = 0
            elif count_h and count_w:
                sub = class_filter(swapped, taps_h, taps_w)
                gather(dy, sub, dx, (count_h, count_w), (1, 1), off_h, off_w, (r_h, r_w), stride)
    return dx.transpose(0, 3, 1, 2), dw, db


forward, backward = protocol(conv2d_forward, conv2d_backward)
