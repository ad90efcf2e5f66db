"""``tinyres demo jacobian``: the singular values of one block's input-output Jacobian.

A residual block computes H(x) = F(x) + x, so its Jacobian is dH/dx = dF/dx + I. At
initialisation dF/dx is small, so the singular values of dH/dx sit around 1: the block
passes every direction of the gradient back with roughly unchanged size. The plain block
H(x) = F(x) has only dF/dx, whose singular values (at PyTorch's default initialisation)
lie mostly far below 1; a stack of such blocks multiplies those factors and the gradient
vanishes (``demo vanishing``).

The demo builds one ``BasicBlock`` (``tinyres.models.blocks``) in float64; its
``branch`` is F and its ``relu`` the activation (whichever it is), so the plain and the
residual maps share their weights. It computes four exact Jacobians by autograd, one
backward pass per output element with a one-hot upstream gradient (row i of J is dy_i/dx):

- ``F(x)`` and ``F(x) + x``: before the block's final activation, where the "+ I" acts;
- ``act(F(x))`` and ``act(F(x) + x)``: the whole plain and residual block. The final
  activation multiplies both by the same kind of diagonal matrix (for ReLU: 0 where the
  unit is off), so both lose the directions of the switched-off units.

The block's input is an activation applied to Gaussian noise, as a block inside a net
receives the previous activation's output.

>>> import numpy as np
>>> spectra = block_spectra(width=2, size=3, setting=Setting(), seed=0)
>>> sorted(spectra), spectra["F(x) + x"].shape
(['F(x)', 'F(x) + x', 'act(F(x) + x)', 'act(F(x))'], (18,))
>>> bool(np.median(spectra["F(x) + x"]) > np.median(spectra["F(x)"]))
True
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

import tinyres as tr
from tinyres.arguments import int_in, seed
from tinyres.demos.nets import ACTIVATIONS, NORM_LAYERS, initialise
from tinyres.demos.report import caption, fmt, out_dir, write_outputs
from tinyres.demos.vanishing import Setting, add_setting_arguments
from tinyres.models.blocks import BasicBlock

NAME = "jacobian"
HELP = "singular values of the input-output Jacobian of one plain and one residual block"

MAPS = ("F(x)", "F(x) + x", "act(F(x))", "act(F(x) + x)")


def jacobian(fn: Callable[[tr.Tensor], tr.Tensor], x: np.ndarray) -> np.ndarray:
    """The exact Jacobian d fn(x) / dx as a (outputs, inputs) matrix, by reverse mode.

    >>> jacobian(lambda t: t * t, np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """
    xt = tr.tensor(x, requires_grad=True)
    y = fn(xt)
    rows = np.empty((y.numel(), x.size), dtype=x.dtype)
    for i in range(y.numel()):
        one_hot = np.zeros(y.numel(), dtype=y.dtype)
        one_hot[i] = 1.0
        xt.grad = None
        y.backward(one_hot.reshape(y.shape), retain_graph=True)
        rows[i] = xt.grad.numpy().ravel()
    return rows


def block_spectra(width: int, size: int, setting: Setting, seed: int = 0) -> dict[str, np.ndarray]:
    """Singular values (descending) of the four maps in the module docstring."""
    tr.manual_seed(seed)
    block = BasicBlock(
        width, width, norm_layer=NORM_LAYERS[setting.norm], activation=ACTIVATIONS[setting.activation]
    )
    initialise(block, setting.init)
    block.double().train()
    branch, act = block.branch, block.relu
    rng = np.random.default_rng(seed)
    noise = tr.from_numpy(rng.standard_normal((1, width, size, size)))
    x = act(noise).numpy()

    maps: dict[str, Callable[[tr.Tensor], tr.Tensor]] = {
        "F(x)": branch,
        "F(x) + x": lambda t: branch(t) + t,
        "act(F(x))": lambda t: act(branch(t)),
        "act(F(x) + x)": lambda t: act(branch(t) + t),
    }
    return {name: np.linalg.svd(jacobian(fn, x), compute_uv=False) for name, fn in maps.items()}


def numerical_zeros(s: np.ndarray) -> np.ndarray:
    """Where a singular value is below what float64 SVD can tell from 0 (numpy's rank rule).

    >>> numerical_zeros(np.array([2.0, 1.0, 1e-20]))
    array([False, False,  True])
    """
    return s < s.max() * len(s) * np.finfo(np.float64).eps


def summary(s: np.ndarray) -> dict[str, float]:
    """Numerical rank, smallest non-zero, median and largest singular value, share in [0.5, 2]."""
    zero = numerical_zeros(s)
    return {
        "rank": int((~zero).sum()),
        "min_nonzero": float(s[~zero].min()),
        "median": float(np.median(np.where(zero, 0.0, s))),
        "max": float(s.max()),
        "share_0.5_to_2": float(np.mean((s >= 0.5) & (s <= 2))),
    }


def results(width: int, size: int, setting: Setting, seed: int = 0) -> dict:
    """Everything the demo reports, as JSON-able data: the spectra and their summaries.

    The table, sentence and figure below are made from this dict alone.
    """
    spectra = block_spectra(width, size, setting, seed)
    return {"setting": setting.__dict__, "width": width, "size": size, "seed": seed,
            "summary": {name: summary(s) for name, s in spectra.items()},
            "singular_values": {name: s.tolist() for name, s in spectra.items()}}


def title(data: dict) -> str:
    width, size, setting = data["width"], data["size"], Setting(**data["setting"])
    return (f"Singular values of one block's Jacobian at initialisation ({setting.label()}; "
            f"width {width}, {size}x{size} input, {width * size * size} dimensions)")


def table(data: dict) -> str:
    lines = [
        title(data),
        f"{'map':<16}{'rank':>6}{'min > 0':>10}{'median':>10}{'max':>10}{'in [0.5, 2]':>14}",
    ]
    for name, st in data["summary"].items():
        lines.append(
            f"{name:<16}{st['rank']:>6}{fmt(st['min_nonzero']):>10}{fmt(st['median']):>10}"
            f"{fmt(st['max']):>10}{st['share_0.5_to_2']:>13.0%}"
        )
    lines.append("rank: singular values above max * n * eps (float64); the rest count as 0")
    return "\n".join(lines)


def sentence(data: dict) -> str:
    """What the figure shows, in numbers: the share of singular values near 1, per map."""
    stats, n = data["summary"], data["width"] * data["size"] ** 2
    share = {name: f"{st['share_0.5_to_2']:.0%}" for name, st in stats.items()}
    return (
        f"Of the {n} singular values of each Jacobian, {share['F(x) + x']} lie within [0.5, 2] "
        f"for the residual map F(x) + x (median {fmt(stats['F(x) + x']['median'])}) against "
        f"{share['F(x)']} for the plain map F(x) (median {fmt(stats['F(x)']['median'])}); after "
        f"the final activation the shares are {share['act(F(x) + x)']} (residual block) and "
        f"{share['act(F(x))']} (plain block)."
    )


def figure(data: dict, words: str, title: str) -> Figure:
    spectra = {name: np.asarray(s) for name, s in data["singular_values"].items()}
    fig = Figure(figsize=(11, 4.8))
    axes = fig.subplots(1, 2, sharey=True)
    styles = {"F(x)": ("tab:blue", "plain"), "F(x) + x": ("tab:red", "residual")}
    panels = [("before the final activation", ("F(x)", "F(x) + x")),
              ("whole block", ("act(F(x))", "act(F(x) + x)"))]
    # Numerical zeros (below SVD precision) are drawn on a floor below the smallest kept value.
    kept = np.concatenate([s[~numerical_zeros(s)] for s in spectra.values()])
    floor = 10.0 ** (np.floor(np.log10(kept.min())) - 1)
    for ax, (panel, names) in zip(axes, panels):
        for name, (color, kind) in zip(names, styles.values()):
            s = spectra[name]
            zero = numerical_zeros(s)
            index = np.arange(1, len(s) + 1)
            ax.plot(index[~zero], s[~zero], color=color, lw=1.8, label=f"{kind}: {name}")
            if zero.any():
                ax.plot(index[zero], np.full(zero.sum(), floor), ".", ms=3, color=color,
                        label=f"{kind}: numerically 0 (drawn at the floor)")
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_title(panel)
        ax.set_xlabel("singular value index (largest first)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 0.1))  # clear of the floor
    axes[0].set_ylabel("singular value of dy/dx")
    caption(fig, words, title)
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_arguments(parser)
    # The Jacobian is (width*size*size)^2 numbers and its SVD costs the cube of that side.
    parser.add_argument("--width", type=int_in(1, 64), default=8, help="channels of the block (<= 64)")
    parser.add_argument("--size", type=int_in(1, 16), default=6, help="height and width of the input (<= 16)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (width 2, 4x4), for CI")
    parser.add_argument("--out", default="results/jacobian", help="output folder")


def run(args: argparse.Namespace) -> int:
    width, size = (2, 4) if args.quick else (args.width, args.size)
    data = results(width, size, Setting(args.activation, args.init, args.norm), args.seed)
    words = sentence(data)
    write_outputs(out_dir(args.out), "jacobian", table(data) + "\n" + words, data | {"sentence": words},
                  figure(data, words, title(data)))
    return 0
