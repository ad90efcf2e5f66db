"""``tinyres demo vanishing``: how the gradient reaches the first layers, plain vs residual.

At initialisation, build a plain and a residual net (``tinyres.demos.nets``) with the same
depth, width, weights and data batch, compute the cross-entropy loss on random labels, run
one ``backward`` and record

- the norm of dLoss/d(input of block l) for every block l (``retain_grad`` on the inputs),
- the norm of every weight's gradient.

If the gradient reaching the first block is many orders of magnitude smaller than the one
reaching the last block, the early layers cannot learn: the gradient *vanishes*. In a
residual block H(x) = F(x) + x, so dH/dx = dF/dx + I: the backward pass always has a path
that multiplies by the identity, and the gradient need not shrink with depth.

The ratio reported per depth is |dL/d(input of block 1)| / |dL/d(input of the last
block)|. Norms are taken in float64 even when the gradients are float32: squaring a
float32 gradient of 1e-24 in float32 gives 0, which would make a small but real gradient
look like an exact zero. An entry is marked as exactly zero only when every element of
the gradient is 0 in the net's own dtype.

>>> m = measure(8, residual=True, setting=Setting(), batch=4, seed=0)
>>> len(m.block_norms), len(m.weight_norms)
(3, 8)
>>> 0.1 < m.ratio < 10
True
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

import tinyres as tr
from tinyres.arguments import checked_int, positive_int, seed
from tinyres.demos.nets import ACTIVATIONS, INITS, NORMS, blocks_for_depth, make_net
from tinyres.demos.report import caption, fmt, out_dir, write_outputs
from tinyres.nn import functional as F

NAME = "vanishing"
HELP = "gradient norm at every block's input at initialisation, plain vs residual nets"

IMAGE_SIZE = 16
WIDTH = 16
NUM_CLASSES = 10


@dataclass(frozen=True)
class Setting:
    """The options that change the gradient flow: activation, initialisation, normalisation."""

    activation: str = "relu"
    init: str = "default"
    norm: str = "none"

    def label(self) -> str:
        """A readable name, e.g. for a figure title.

        >>> Setting("tanh", "kaiming", "batch").label()
        'tanh, kaiming init, batch norm'
        """
        init = "PyTorch default init" if self.init == "default" else f"{self.init} init"
        norm = "batch norm" if self.norm == "batch" else "no normalisation"
        return f"{self.activation}, {init}, {norm}"


@dataclass
class Measurement:
    """The gradient norms of one net after one backward pass."""

    depth: int
    residual: bool
    loss: float
    block_norms: list[float]  # |dL/d(input of block l)|, l = 1 .. blocks
    # True where every element of that gradient is 0 or below the dtype's smallest normal
    # number (subnormal): no significant digit of it is left. Which of the two a kernel
    # gives is its own business (BLAS flushes subnormals to 0; Winograd's transforms keep
    # rounding noise of that size), so the demo reports neither as a number.
    block_underflow: list[bool]
    weight_norms: dict[str, float] = field(default_factory=dict)  # parameter name -> |dL/dw|
    dtype: str = "float32"

    @property
    def ratio(self) -> float:
        """|gradient at block 1's input| / |gradient at the last block's input|."""
        first, last = self.block_norms[0], self.block_norms[-1]
        return first / last if last > 0 else math.nan

    @property
    def first_underflows(self) -> bool:
        return self.block_underflow[0]


def grad_norm(grad: np.ndarray) -> float:
    """The 2-norm, summed in float64 so that tiny float32 gradients do not square to 0.

    >>> grad_norm(np.full(4, 1e-24, dtype=np.float32)) > 0
    True
    >>> float(np.linalg.norm(np.full(4, 1e-24, dtype=np.float32)))   # the float32 pitfall
    0.0
    """
    return float(np.sqrt(np.sum(np.square(grad.astype(np.float64)))))


def data_batch(batch: int, seed: int, dtype: type = np.float32) -> tuple[tr.Tensor, tr.Tensor]:
    """A random batch: Gaussian 3x16x16 images and uniformly random labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(dtype)
    y = rng.integers(0, NUM_CLASSES, size=batch)
    return tr.from_numpy(x), tr.from_numpy(y)


def measure(
    depth: int, residual: bool, setting: Setting, batch: int = 32, seed: int = 0, dtype: str = "float32"
) -> Measurement:
    """Build one net (weights from ``seed``), run forward and backward, record gradient norms.

    The plain and the residual net of one depth get identical weights: the same seed and
    the same construction order; only the ``+ x`` differs.
    """
    tr.manual_seed(seed)
    net = make_net(depth, residual, setting.activation, setting.init, setting.norm, WIDTH)
    if dtype == "float64":
        net.double()
    x, y = data_batch(batch, seed, np.dtype(dtype).type)
    net.train()  # batch norm normalises with the batch's statistics, as in training

    # The net's own forward, unrolled so that every block's input is kept.
    h = net.stem(x)
    inputs = []
    for block in net.layer1:
        h.retain_grad()
        inputs.append(h)
        h = block(h)
    loss = F.cross_entropy(net.head(h), y)
    loss.backward()

    grads = [t.grad.numpy() for t in inputs]
    return Measurement(
        depth=depth,
        residual=residual,
        loss=loss.item(),
        block_norms=[grad_norm(g) for g in grads],
        block_underflow=[bool(np.all(np.abs(g) < np.finfo(g.dtype).tiny)) for g in grads],
        weight_norms={
            name: grad_norm(p.grad.numpy())
            for name, p in net.named_parameters()
            if name.endswith("weight") and p.ndim in (2, 4)  # conv and linear, not BN scales
        },
        dtype=dtype,
    )


# ---- words: generated from the numbers ------------------------------------------------------


def _ratio_cell(m: Measurement) -> str:
    if m.block_underflow[-1]:
        return "underflow" if m.first_underflows else "inf"
    return "underflow" if m.first_underflows else fmt(m.ratio)


def _change(m: Measurement) -> tuple[str, str]:
    """(kind of change, its size) of the gradient norm from the last block back to the first."""
    if m.block_underflow[-1]:
        return f"underflows in {m.dtype} already at the last block", ""
    if m.first_underflows:
        return f"underflows in {m.dtype} (below its smallest normal number)", ""
    if m.ratio < 0.1:
        return "shrinks", f"{fmt(1 / m.ratio)}-fold"
    if m.ratio > 10:
        return "grows", f"{fmt(m.ratio)}-fold"
    return "stays within a factor of 10", f"×{fmt(m.ratio)}"


def _family_clause(measurements: list[Measurement]) -> str:
    """E.g. 'shrinks 4.2e6-fold at depth 20 and 6.4e20-fold at depth 56, and underflows in
    float32 (below its smallest normal number) at depth 110' for one family of nets."""
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(_change(m)[0], []).append(m)
    parts = []
    for kind, ms in groups.items():
        if len(ms) == len(measurements) > 1:
            where = "at every depth"
        else:
            where = "at depth" + ("s " if len(ms) > 1 else " ") + _and([str(m.depth) for m in ms])
        sizes = [_change(m)[1] for m in ms]
        if not any(sizes):
            parts.append(f"{kind} {where}")
        elif kind.startswith("stays"):
            parts.append(f"{kind} {where} ({', '.join(sizes)})")
        elif len(ms) == len(measurements) > 1:
            parts.append(f"{kind} {_and(sizes)} at depths {_and([str(m.depth) for m in ms])}")
        else:
            parts.append(f"{kind} " + _and([f"{size} at depth {m.depth}" for size, m in zip(sizes, ms)]))
    return _and(parts, ", and " if len(parts) > 1 and " and " in "".join(parts) else " and ")


def _and(items: list[str], last: str = " and ") -> str:
    """Join words as English does.

    >>> _and(["a"]), _and(["a", "b"]), _and(["a", "b", "c"])
    ('a', 'a and b', 'a, b and c')
    """
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + last + items[-1]


def sentence(setting: Setting, plain: list[Measurement], residual: list[Measurement]) -> str:
    """One sentence saying what the figure shows, built only from the measured ratios."""
    return (
        f"At initialisation ({setting.label()}), going back from the last block's input to "
        f"the first's, the gradient norm of the plain nets {_family_clause(plain)}, while "
        f"that of the residual nets {_family_clause(residual)}."
    )


def table(setting: Setting, plain: list[Measurement], residual: list[Measurement], header: str) -> str:
    lines = [
        "|dLoss/d(input of block 1)| / |dLoss/d(input of the last block)| at initialisation",
        f"({setting.label()}; {header})",
        f"{'depth':>6}{'blocks':>8}{'plain':>12}{'residual':>12}",
    ]
    for p, r in zip(plain, residual):
        lines.append(f"{p.depth:>6}{blocks_for_depth(p.depth):>8}{_ratio_cell(p):>12}{_ratio_cell(r):>12}")
    if any(m.first_underflows for m in plain + residual):
        both = " (the last block's too)" if any(m.block_underflow[-1] for m in plain + residual) else ""
        dtype = plain[0].dtype
        tiny = float(np.finfo(dtype).tiny)
        lines.append(f"underflow: every element of the first block's gradient is 0 or below the smallest "
                     f"normal {dtype} ({tiny:.1e}){both}")
    return "\n".join(lines)


# ---- pictures -------------------------------------------------------------------------------


def _floor(values: list[float]) -> float:
    """A power of ten well below the smallest positive value: where exact zeros are drawn."""
    positive = [v for v in values if v > 0]
    smallest = min(positive) if positive else 1.0
    return 10.0 ** (math.floor(math.log10(smallest)) - 1)


def _log_line(ax, xs, ys, floor, **style) -> None:
    """Plot ``ys`` on a log axis; exact zeros become open triangles on the ``floor``."""
    xs, ys = np.asarray(xs), np.asarray(ys)
    positive = ys > 0
    ax.plot(xs[positive], ys[positive], **style)
    if not positive.all():
        zeros = np.full((~positive).sum(), floor)
        ax.plot(xs[~positive], zeros, "v", mfc="none", color=style["color"], zorder=style.get("zorder"))


def _layer_x(depth: int) -> list[int]:
    """Layer index of each block's first convolution (layer 1 is the stem)."""
    return [2 * i + 2 for i in range(blocks_for_depth(depth))]


def figure(setting: Setting, plain: list[Measurement], residual: list[Measurement], words: str) -> Figure:
    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(2, 2, sharey="row", sharex=True)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    rows = [
        ("block_norms", "|dLoss/d(block input)|\n(at the block's first conv layer)"),
        ("weight_norms", "|dLoss/d(weight)|  (conv and linear)"),
    ]
    for row, (attr, ylabel) in enumerate(rows):
        values = [
            v
            for m in plain + residual
            for v in (m.block_norms if attr == "block_norms" else m.weight_norms.values())
        ]
        floor = _floor(values)
        zeros_drawn = False
        for col, (name, ms) in enumerate([("plain", plain), ("residual", residual)]):
            ax = axes[row, col]
            for i, (m, color) in enumerate(zip(ms, colors)):
                if attr == "block_norms":
                    xs, ys = _layer_x(m.depth), m.block_norms
                else:
                    ys = list(m.weight_norms.values())
                    xs = list(range(1, len(ys) + 1))
                # Shallower nets on top: the residual lines lie on one another.
                style = {"color": color, "lw": 1.5, "zorder": 10 - i, "label": f"depth {m.depth}"}
                _log_line(ax, xs, ys, floor, **style)
                zeros_drawn |= min(ys) == 0
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            if row == 0:
                ax.set_title(f"{name} nets", fontsize=12)
            else:
                ax.set_xlabel("layer index (1 = stem convolution, last = classifier)")
            if col == 0:
                ax.set_ylabel(ylabel)
        if zeros_drawn:
            axes[row, 0].plot([], [], "v", mfc="none", color="gray", label="exactly 0 (drawn at the floor)")
        axes[row, 0].legend(fontsize=8, loc="lower right")
    caption(fig, words, f"Gradient norms at initialisation: {setting.label()}", width=130, room=0.06)
    return fig


def grid_figure(results: dict[Setting, tuple[list[Measurement], list[Measurement]]]) -> Figure:
    """One panel per setting (rows: activation x norm, columns: init); plain dashed, residual solid."""
    rows = [(a, n) for a in ACTIVATIONS for n in NORMS]
    fig = Figure(figsize=(13, 2.6 * len(rows)))
    axes = fig.subplots(len(rows), len(INITS), sharex=True)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for (r, (activation, norm)), (c, init) in itertools.product(enumerate(rows), enumerate(INITS)):
        ax = axes[r, c]
        plain, residual = results[Setting(activation, init, norm)]
        floor = _floor([v for m in plain + residual for v in m.block_norms])
        for m, color in zip(plain, colors):
            _log_line(ax, _layer_x(m.depth), m.block_norms, floor, color=color, ls="--", lw=1.2)
        for m, color in zip(residual, colors):
            _log_line(ax, _layer_x(m.depth), m.block_norms, floor, color=color, lw=1.5)
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(Setting(activation, init, norm).label(), fontsize=9)
        if r == len(rows) - 1:
            ax.set_xlabel("layer index of the block's first conv")
        if c == 0:
            ax.set_ylabel("|dLoss/d(block input)|", fontsize=8)
    handles = [axes[0, 0].plot([], [], color=col)[0] for col in colors[: len(plain)]]
    handles += [axes[0, 0].plot([], [], "k--")[0], axes[0, 0].plot([], [], "k-")[0]]
    handles.append(axes[0, 0].plot([], [], "kv", mfc="none")[0])
    labels = [f"depth {m.depth}" for m in plain] + ["plain", "residual", "exactly 0 (at the floor)"]
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9)
    # Fixed margins: tight_layout measures every tick label of 18 panels, which takes seconds.
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.045, top=0.955, hspace=0.32, wspace=0.22)
    return fig


# ---- command line ---------------------------------------------------------------------------


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """--activation, --init, --norm: the fields of a ``Setting`` (also used by demo jacobian)."""
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    parser.add_argument("--init", choices=INITS, default="default", help="default = PyTorch's")
    parser.add_argument("--norm", choices=NORMS, default="none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_arguments(parser)
    parser.add_argument("--depths", type=checked_int(blocks_for_depth), nargs="+", default=None,
                        help="depths in weighted layers, 2 + 2 per block (default: 20 56 110)")
    parser.add_argument("--batch", type=positive_int, default=None, help="default: 32")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="float64 shows gradients that underflow in float32")
    parser.add_argument("--grid", action="store_true",
                        help="every activation x init x norm (ignores --activation/--init/--norm)")
    parser.add_argument("--quick", action="store_true", help="depths 8 and 14, batch 4: a smoke test for CI")
    parser.add_argument("--out", default="results/vanishing", help="output folder")


def results(
    settings: list[Setting], depths: list[int], batch: int, seed: int, dtype: str
) -> dict[Setting, tuple[list[Measurement], list[Measurement]]]:
    """Measure: per setting, the plain and the residual net of every depth (``measure``).

    Every presentation below (table, sentence, figures, the JSON record) is made from
    these measurements alone.
    """
    bar = tqdm(total=len(settings) * len(depths) * 2, desc="nets", unit="net", leave=False)
    out = {}
    for setting in settings:
        plain, residual = [], []
        for depth in depths:
            for residual_net, into in ((False, plain), (True, residual)):
                into.append(measure(depth, residual_net, setting, batch, seed, dtype))
                bar.update()
        out[setting] = (plain, residual)
    bar.close()
    return out


def record(setting: Setting, plain: list[Measurement], residual: list[Measurement], words: str) -> dict:
    """One setting's entry of the JSON file: its measurements as plain data, and the sentence."""
    return {"setting": asdict(setting), "sentence": words,
            "nets": [asdict(m) | {"ratio": m.ratio} for m in plain + residual]}


def run(args: argparse.Namespace) -> int:
    args.depths = args.depths or ([8, 14] if args.quick else [20, 56, 110])
    args.batch = args.batch or (4 if args.quick else 32)
    for depth in args.depths:
        blocks_for_depth(depth)  # fail early on an odd depth
    start = time.perf_counter()
    folder = out_dir(args.out)
    header = f"{IMAGE_SIZE}x{IMAGE_SIZE} inputs, batch {args.batch}, width {WIDTH}, seed {args.seed}"
    if args.dtype != "float32":
        header += f", {args.dtype}"
    settings = (
        [Setting(*s) for s in itertools.product(sorted(ACTIVATIONS), INITS, NORMS)]
        if args.grid
        else [Setting(args.activation, args.init, args.norm)]
    )
    measured = results(settings, args.depths, args.batch, args.seed, args.dtype)
    words = {s: sentence(s, plain, residual) for s, (plain, residual) in measured.items()}
    records = [record(s, plain, residual, words[s]) for s, (plain, residual) in measured.items()]
    elapsed = time.perf_counter() - start
    data = {"image_size": IMAGE_SIZE, "width": WIDTH, "batch": args.batch, "seed": args.seed,
            "dtype": args.dtype, "seconds": elapsed, "settings": records}
    if args.grid:
        text = grid_table(measured, header)
        write_outputs(folder, "grid", text + f"\n({elapsed:.1f} s)", data, grid_figure(measured))
    else:
        setting = settings[0]
        plain, residual = measured[setting]
        text = table(setting, plain, residual, header) + "\n" + words[setting]
        write_outputs(folder, "vanishing", text + f"\n({elapsed:.1f} s)", data,
                      figure(setting, plain, residual, words[setting]))
    return 0


def grid_table(results: dict[Setting, tuple[list, list]], header: str) -> str:
    """One row per setting: the first/last block gradient-norm ratio per depth, plain | residual."""
    depths = [m.depth for m in next(iter(results.values()))[0]]
    cols = "".join(f"{'d' + str(d):>10}" for d in depths)
    lines = [
        "|dLoss/d(input of block 1)| / |dLoss/d(input of the last block)| at initialisation",
        f"({header}; underflow: every element 0 or subnormal in {next(iter(results.values()))[0][0].dtype})",
        f"{'activation':<11}{'init':<9}{'norm':<7}{'plain':>{len(cols)}} |{'residual':>{len(cols)}}",
        f"{'':<27}{cols} |{cols}",
    ]
    for s, (plain, residual) in results.items():
        p = "".join(f"{_ratio_cell(m):>10}" for m in plain)
        r = "".join(f"{_ratio_cell(m):>10}" for m in residual)
        lines.append(f"{s.activation:<11}{s.init:<9}{s.norm:<7}{p} |{r}")
    return "\n".join(lines)
