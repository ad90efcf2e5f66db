r"""3x3 convolution by Winograd's minimal filtering F(m x m, 3 x 3), in plain NumPy.

im2col spends 9 multiplications per output pixel, input channel and output channel.
Winograd's algorithm computes an m x m tile of outputs from an (m+2) x (m+2) tile of
inputs ``d`` and the 3 x 3 filter ``g`` with (m+2)^2 multiplications instead of 9 m^2:

.. math::  Y = A^T \big[ (G g G^T) \odot (B^T d B) \big] A

(4 x 4 = 16 for a 2 x 2 tile instead of 36; 36 for a 4 x 4 tile instead of 144).
Summed over input channels, the elementwise product becomes (m+2)^2 independent
matrix products (tiles x C_in) @ (C_in x C_out), which BLAS does well.

**Where B, G and A come from (one dimension; 2-d nests it).** A correlation of a filter
g (3 taps) with m + 2 inputs d is the transpose of a *polynomial product*: the
coefficients of g(x) h(x), for h of degree m - 1, are a (m+2) x m matrix T(g) applied
to h, and the correlation is y = T(g)^T d. Multiply polynomials the Toom-Cook way:

1. evaluate g and h at a = m + 2 points (0, 1, -1, 2, -2, ... and "infinity", which
   reads the leading coefficient): Vandermonde rows ``G`` (a x 3) and ``H`` (a x m);
2. multiply the a values pairwise: a multiplications, the only ones that involve both;
3. interpolate the product polynomial from its a values (the Chinese remainder
   theorem for the moduli x - p_j, plus the leading term): ``C = V^{-1}``, with V the
   a x a Vandermonde matrix of the points.

So T(g) h = C [(G g) ⊙ (H h)] and, transposed, y = H^T [(G g) ⊙ (C^T d)]: A^T = H^T,
B^T = C^T. The interpolation divides by f_j = prod_{l != j} (p_j - p_l); moving that
division into G's row j (a filter is transformed once, not per tile) leaves B^T with
small integers. ``derive`` below does exactly this with exact fractions, and the
tables written out below are its output (tests check that they agree). They match
Lavin & Gray (2016) up to the sign of some rows, a free choice: a sign in G's row j
is undone by the same sign in B^T's row j.

Larger tiles need fewer multiplications but larger points (2, -2 here), so the
transforms mix numbers of very different size and float32 loses more digits:
F(4 x 4) is measured against F(2 x 2) and im2col in ``benchmarks/README.md``.

Only stride 1 and dilation 1 fit this scheme; any padding does (the input is placed
in a zero canvas that covers whole tiles: edge tiles read zeros, never outside x).

>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
>>> from tinyres.kernels import conv_reference
>>> want = conv_reference.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
>>> all(np.allclose(conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), m=m), want) for m in (2, 4))
True
"""

from __future__ import annotations

import functools
import types
from fractions import Fraction

import numpy as np

from tinyres.kernels import conv_reference
from tinyres.kernels.sizes import Pair

# ---- the transforms, written out ---------------------------------------------------------

# F(2, 3): points 0, 1, -1 and infinity.
BT_2 = np.array([
    [-1, 0, 1, 0],
    [0, 1, 1, 0],
    [0, -1, 1, 0],
    [0, -1, 0, 1],
], dtype=np.float64)
G_2 = np.array([
    [-1, 0, 0],
    [1 / 2, 1 / 2, 1 / 2],
    [1 / 2, -1 / 2, 1 / 2],
    [0, 0, 1],
], dtype=np.float64)
AT_2 = np.array([
    [1, 1, 1, 0],
    [0, 1, -1, 1],
], dtype=np.float64)

# F(4, 3): points 0, 1, -1, 2, -2 and infinity.
BT_4 = np.array([
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
], dtype=np.float64)
G_4 = np.array([
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
], dtype=np.float64)
AT_4 = np.array([
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
], dtype=np.float64)

# Output tile size m -> (B^T, G, A^T), and the finite points each was derived from.
MATRICES = {2: (BT_2, G_2, AT_2), 4: (BT_4, G_4, AT_4)}
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2)}
TILE_SIZES = tuple(MATRICES)


def derive(points: tuple[int, ...], r: int = 3) -> tuple[list[list[Fraction]], ...]:
    """(B^T, G, A^T) of F(m, r) for m = len(points) + 2 - r, from the finite points and infinity.

    Exact fractions, so the result can be compared with the tables above entry by entry.

    >>> BT, G, AT = derive((0, 1, -1))
    >>> [[int(v) for v in row] for row in AT]
    [[1, 1, 1, 0], [0, 1, -1, 1]]
    """
    a = len(points) + 1
    m = a + 1 - r

    def row(p: int | None, n: int) -> list[Fraction]:
        """Evaluation at p of a polynomial with n coefficients; p=None is infinity (the leading one)."""
        if p is None:
            return [Fraction(int(k == n - 1)) for k in range(n)]
        return [Fraction(p) ** k for k in range(n)]

    everywhere = [*points, None]
    V = [row(p, a) for p in everywhere]  # a x a: evaluates the product polynomial
    C = _inverse(V)  # interpolation: values at the points -> coefficients
    f = [_product(p - q for q in points if q != p) for p in points] + [Fraction(1)]
    BT = [[f[j] * C[i][j] for i in range(a)] for j in range(a)]  # B^T = diag(f) C^T
    G = [[v / f[j] for v in row(p, r)] for j, p in enumerate(everywhere)]
    AT = [[row(p, m)[i] for p in everywhere] for i in range(m)]  # A^T = H^T
    return BT, G, AT


def _product(values) -> Fraction:
    result = Fraction(1)
    for v in values:
        result *= v
    return result


def _inverse(M: list[list[Fraction]]) -> list[list[Fraction]]:
    """Gauss-Jordan elimination in exact arithmetic (a Vandermonde matrix of distinct points)."""
    n = len(M)
    rows = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(M)]
    for col in range(n):
        pivot = next(i for i in range(col, n) if rows[i][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        scale = rows[col][col]
        rows[col] = [v / scale for v in rows[col]]
        for i in range(n):
            if i != col and rows[i][col] != 0:
                factor = rows[i][col]
                rows[i] = [v - factor * p for v, p in zip(rows[i], rows[col])]
    return [r[n:] for r in rows]


# ---- the algorithm ----------------------------------------------------------------------


def check_applies(w_shape: tuple[int, ...], stride: Pair, dilation: Pair) -> None:
    """Winograd F(m x m, 3 x 3) is for 3x3 kernels, stride 1, dilation 1: refuse anything else."""
    if tuple(w_shape[2:]) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        raise ValueError(
            f"winograd: needs a 3x3 kernel, stride (1, 1) and dilation (1, 1), got kernel "
            f"{tuple(w_shape[2:])}, stride {tuple(stride)}, dilation {tuple(dilation)}"
        )


def tile_grid(H: int, W: int, padding: tuple[int, int], m: int) -> tuple[int, int, int, int]:
    """(Ho, Wo, tiles_h, tiles_w): the output size and how many m x m tiles cover it."""
    Ho, Wo = H + 2 * padding[0] - 2, W + 2 * padding[1] - 2
    return Ho, Wo, -(-Ho // m), -(-Wo // m)


def filter_transform(w: np.ndarray, m: int) -> np.ndarray:
    """U = G g G^T for every (output, input) channel pair: (C_out, C, 3, 3) -> (a, a, C_out, C)."""
    _, G, _ = MATRICES[m]
    return np.einsum("ik,ockl,jl->ijoc", G.astype(w.dtype), w, G.astype(w.dtype))


def input_tiles(x: np.ndarray, padding: tuple[int, int], m: int) -> np.ndarray:
    """Overlapping (m+2) x (m+2) tiles of the zero-padded x: (N, C, tiles_h, tiles_w, a, a).

    Tile (th, tw) starts at padded row th*m, column tw*m; neighbours share 2 rows or
    columns. The canvas is as large as the tiles need, so edge tiles read zeros.
    A negative padding (used by the input gradient) crops x instead.
    """
    N, C, H, W = x.shape
    _, _, tiles_h, tiles_w = tile_grid(H, W, padding, m)
    a = m + 2
    canvas = np.zeros((N, C, tiles_h * m + 2, tiles_w * m + 2), dtype=x.dtype)
    (top, left), (skip_h, skip_w) = (max(0, p) for p in padding), (max(0, -p) for p in padding)
    rows = min(H - skip_h, canvas.shape[2] - top)
    cols = min(W - skip_w, canvas.shape[3] - left)
    inside = x[:, :, skip_h : skip_h + rows, skip_w : skip_w + cols]
    canvas[:, :, top : top + rows, left : left + cols] = inside
    windows = np.lib.stride_tricks.sliding_window_view(canvas, (a, a), axis=(2, 3))
    return windows[:, :, ::m, ::m]


def winograd_correlate(x: np.ndarray, w: np.ndarray, padding: tuple[int, int], m: int) -> np.ndarray:
    """3x3 correlation of x (N, C, H, W) with w (C_out, C, 3, 3), stride 1, any (even negative) padding."""
    BT, _, AT = (t.astype(x.dtype) for t in MATRICES[m])
    N, _, H, W = x.shape
    Ho, Wo, tiles_h, tiles_w = tile_grid(H, W, padding, m)
    U = filter_transform(w, m)  # (a, a, C_out, C)
    d = input_tiles(x, padding, m)  # (N, C, th, tw, a, a)
    V = np.einsum("ik,nchwkl,jl->ijnhwc", BT, d, BT)  # B^T d B, every tile and channel
    M = np.einsum("ijoc,ijnhwc->ijnhwo", U, V)  # (a*a) matrix products over C
    Y = np.einsum("pi,ijnhwo,qj->nohpwq", AT, M, AT)  # A^T M A: (N, C_out, th, m, tw, m)
    return Y.reshape(N, -1, tiles_h * m, tiles_w * m)[:, :, :Ho, :Wo]


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair, dilation: Pair,
    m: int = 4,
) -> np.ndarray:
    """y = conv2d(x, w) + b by Winograd F(m x m, 3 x 3); the same contract as the other tiers."""
    check_applies(w.shape, stride, dilation)
    y = winograd_correlate(x, w, padding, m)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def conv2d_backward(
    grad: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    input_grad: bool = True,
    bias_grad: bool = True,
    m: int = 4,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    r"""(dx, dw, db), both gradients by Winograd.

    - dx: y[h] = sum_i x[h - p + i] w[i], so dx[h] = sum_i dy[h + p - i] w[i]: the
      correlation of dy, padded by 2 - p, with the filter turned 180 degrees and its
      channel axes swapped. The same Winograd convolution, output size H again.
    - dw in the Winograd domain: with M = U ⊙ V (per tile and channel pair) and
      Y = A^T M A, the chain rule gives dM = A dY A^T per tile,
      dU[ξ, ν] = sum over tiles of dM[ξ, ν] V[ξ, ν]^T (again (m+2)^2 matrix products),
      and since U = G g G^T, dw = G^T dU G.
    """
    check_applies(w.shape, stride, dilation)
    BT, G, AT = (t.astype(x.dtype) for t in MATRICES[m])
    N, _, H, W = x.shape
    Ho, Wo, tiles_h, tiles_w = tile_grid(H, W, padding, m)
    V = np.einsum("ik,nchwkl,jl->ijnhwc", BT, input_tiles(x, padding, m), BT)
    dy = np.zeros((N, grad.shape[1], tiles_h * m, tiles_w * m), dtype=x.dtype)
    dy[:, :, :Ho, :Wo] = grad  # tiles past the edge computed outputs nobody uses: zero gradient
    dy_tiles = dy.reshape(N, -1, tiles_h, m, tiles_w, m)
    dM = np.einsum("pi,nohpwq,qj->ijnhwo", AT, dy_tiles, AT)  # A dY A^T
    dU = np.einsum("ijnhwo,ijnhwc->ijoc", dM, V)
    dw = np.einsum("ik,ijoc,jl->ockl", G, dU, G)  # G^T dU G
    db = grad.sum(axis=(0, 2, 3)) if bias_grad else None
    if not input_grad:
        return None, dw, db
    turned = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, C_out, 3, 3)
    dx = winograd_correlate(grad, turned, (2 - padding[0], 2 - padding[1]), m)
    return dx, dw, db


def tiled(module_name: str, forward, backward):
    """``with_tile(m)``: a Winograd module's ``forward`` and ``backward`` with the tile size
    fixed to m, named as the module, which ``tinyres.kernels.select`` hands to an op."""

    def with_tile(m: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(__name__=module_name, forward=functools.partial(forward, m=m),
                                     backward=backward)

    return with_tile


# The convolution protocol (conv_reference.protocol); forward's keyword m (default 4, as
# conv2d_forward's) is kept in saved and handed back to conv2d_backward.
forward, backward = conv_reference.protocol(conv2d_forward, conv2d_backward)
with_tile = tiled(__name__, forward, backward)
