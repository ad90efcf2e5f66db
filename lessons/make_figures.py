"""Make the figures the lessons show: ``python lessons/make_figures.py [name ...]``.

Every PNG under ``lessons/figures/`` is drawn by one function here, from measurements
made with tinyres when the script runs (or, for trainings, from the demos' cached
results). With no arguments every figure is remade; give names to remake a few.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

if __package__ in (None, ""):  # run as a script: make ``import tinyres`` work from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinyres as tr
from tinyres.demos.vanishing import Setting, measure
from tinyres.models import BasicBlock, Bottleneck, resnet18
from tinyres.viz import draw_block

FIGURE_DIR = Path(__file__).resolve().parent / "figures"
DPI = 100


def finite_difference_error(dtype: type, eps: float, central: bool, x: float = 0.7) -> float:
    """|numeric - exact| derivative of tanh at ``x``, with the forward pass in ``dtype``."""

    def f(v: float) -> float:
        return float(tr.tensor(np.array([v], dtype=dtype)).tanh().data[0])

    e = float(dtype(eps))
    numeric = (f(x + e) - f(x - e)) / (2 * e) if central else (f(x + e) - f(x)) / e
    return abs(numeric - (1 - np.tanh(x) ** 2))


def finite_differences() -> Figure:
    """Lesson 3: error of forward and central differences against eps, float32 and float64."""
    eps = np.logspace(-1, -12, 45)
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for dtype, colour in ((np.float32, "tab:red"), (np.float64, "tab:blue")):
        for central, style in ((False, ":"), (True, "-")):
            errors = [max(finite_difference_error(dtype, e, central), 1e-17) for e in eps]
            label = f"{'central' if central else 'forward'}, {dtype.__name__}"
            ax.loglog(eps, errors, style, color=colour, label=label)
    ax.set_xlabel("step eps")
    ax.set_ylabel("|numeric - exact| derivative")
    ax.set_title("d tanh(x)/dx at x = 0.7: truncation error (left) vs rounding error (right)")
    ax.invert_xaxis()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def basic_block() -> Figure:
    """Lesson 6: the residual block, drawn from a live ``BasicBlock``."""
    return draw_block(BasicBlock(64, 64))


def bottleneck_block() -> Figure:
    """Lesson 7: the seeds' bottleneck, 256 -> 64 -> 64 -> 256 channels, identity shortcut."""
    return draw_block(Bottleneck(256, 64))


def resnet18_stages() -> Figure:
    """Lesson 8: ResNet-18 as a column of stages with output shapes for a 224x224 image."""
    return draw_block(resnet18())


def vanishing_settings() -> Figure:
    """Lesson 9: gradient norm at every block's input, plain vs residual, four settings.

    float64, so that the plain nets' tiny gradients are numbers rather than underflowed zeros.
    """
    settings = [Setting(), Setting(init="kaiming"), Setting(norm="batch"), Setting(activation="sigmoid")]
    depths = (20, 56, 110)
    fig = Figure(figsize=(10, 6.4))
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, setting in zip(axes, settings):
        for depth, colour in zip(depths, ("tab:blue", "tab:orange", "tab:green")):
            for residual, style in ((False, "--"), (True, "-")):
                m = measure(depth, residual, setting, batch=8, seed=0, dtype="float64")
                layers = [2 * i + 2 for i in range(len(m.block_norms))]  # each block's first conv
                label = f"{'residual' if residual else 'plain'}-{depth}"
                ax.semilogy(layers, m.block_norms, style, color=colour, lw=1.3, label=label)
        ax.set_title(setting.label(), fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[2:]:
        ax.set_xlabel("layer index of the block's first convolution")
    for ax in axes[::2]:
        ax.set_ylabel("|dLoss/d(block input)|")
    axes[0].legend(fontsize=7, ncol=3)
    fig.suptitle("Gradient norms at initialisation (dashed: plain, solid: residual)", fontsize=12)
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[], Figure]] = {
    "03-finite-differences": finite_differences,
    "06-basic-block": basic_block,
    "07-bottleneck-block": bottleneck_block,
    "08-resnet18": resnet18_stages,
    "09-vanishing": vanishing_settings,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"figures to make (default all): {', '.join(FIGURES)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; known: {', '.join(FIGURES)}")
    FIGURE_DIR.mkdir(exist_ok=True)
    for name in args.names or FIGURES:
        path = FIGURE_DIR / f"{name}.png"
        FIGURES[name]().savefig(path, dpi=DPI)
        print(f"wrote {path.relative_to(FIGURE_DIR.parent.parent)} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
