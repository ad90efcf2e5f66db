"""The gradient-flow playground of lesson 10: change the net, see every block's gradient.

``picture(Choice(...))`` builds one net at initialisation with ``vanishing.measure`` (the
demo's own measurement: one forward and backward on a random batch) and draws the norm of
dLoss/d(input of block l) for every block, the numbers beside the plot. ``playground()``
puts widgets (depth, activation, initialisation, normalisation, residual on/off, batch,
seed) in front of it, for a notebook with a kernel; ``grid(folder)`` draws a fixed set of
choices as PNG files, for the web site, where there is no kernel to rerun anything.

>>> fig, numbers = picture(Choice(depth=8, batch=4))
>>> numbers.splitlines()[0]
'depth 8, residual, relu, PyTorch default init, no normalisation (batch 4, seed 0)'
"""

from __future__ import annotations

import base64
import io
import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tinyres.demos.nets import ACTIVATIONS, INITS, NORMS, blocks_for_depth
from tinyres.demos.vanishing import Setting, measure

DEPTHS = (8, 14, 20, 32, 44, 56, 110)
# The web site's pictures: every combination of these (2 x 2 x 2 x 2 x 2 = 32 files).
GRID = {"depth": (20, 56), "activation": ("relu", "tanh"), "init": ("default", "kaiming"),
        "norm": ("none", "batch"), "residual": (False, True)}


@dataclass(frozen=True)
class Choice:
    """What the widgets set."""

    depth: int = 20
    activation: str = "relu"
    init: str = "default"
    norm: str = "none"
    residual: bool = True
    batch: int = 8
    seed: int = 0

    def stem(self) -> str:
        """The file name of this choice's picture, e.g. ``d20-relu-default-none-residual``."""
        kind = "residual" if self.residual else "plain"
        return f"d{self.depth}-{self.activation}-{self.init}-{self.norm}-{kind}"


def picture(choice: Choice) -> tuple[Figure, str]:
    """One measurement drawn: the per-block gradient norms (log scale) and the numbers as text."""
    start = time.perf_counter()
    setting = Setting(choice.activation, choice.init, choice.norm)
    m = measure(choice.depth, choice.residual, setting, batch=choice.batch, seed=choice.seed)
    seconds = time.perf_counter() - start
    blocks = list(range(1, blocks_for_depth(choice.depth) + 1))
    norms = [max(n, 1e-45) for n in m.block_norms]  # exact zeros drawn at the bottom of the axis

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(blocks, norms, "o-", ms=3, color="tab:orange" if choice.residual else "tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # blocks are counted, not measured
    ax.set_xlabel("block (1 = next to the input)")
    ax.set_ylabel("|dLoss/d(block input)|")
    ax.set_title(f"{'residual' if choice.residual else 'plain'} net, depth {choice.depth}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)

    underflow = sum(m.block_underflow)
    numbers = "\n".join([
        f"depth {choice.depth}, {'residual' if choice.residual else 'plain'}, {setting.label()} "
        f"(batch {choice.batch}, seed {choice.seed})",
        f"loss {m.loss:.3f}",
        f"last block  {m.block_norms[-1]:.3g}",
        f"first block {m.block_norms[0]:.3g}",
        f"first / last {m.ratio:.3g}" if m.ratio == m.ratio else "first / last: undefined (last is 0)",
        f"blocks whose gradient underflows float32: {underflow} of {len(blocks)}",
        f"measured in {seconds:.2f} s",
    ])
    return fig, numbers


def playground():
    """The widgets and the output they redraw (needs ipywidgets and a running kernel)."""
    import ipywidgets as widgets

    controls = {
        "depth": widgets.SelectionSlider(options=DEPTHS, value=20, description="depth"),
        "activation": widgets.Dropdown(options=list(ACTIVATIONS), value="relu", description="activation"),
        "init": widgets.Dropdown(options=list(INITS), value="default", description="init"),
        "norm": widgets.Dropdown(options=list(NORMS), value="none", description="norm"),
        "residual": widgets.Checkbox(value=True, description="residual (+x)"),
        "batch": widgets.IntSlider(value=8, min=2, max=64, step=2, description="batch"),
        "seed": widgets.IntSlider(value=0, min=0, max=9, description="seed"),
    }
    plot, numbers = widgets.Output(), widgets.Output()

    def redraw(_change=None) -> None:
        fig, text = picture(Choice(**{name: w.value for name, w in controls.items()}))
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=90)
        # The outputs set directly (not printed inside `with plot:`), so the same callback works
        # where nothing captures the prints, as in the tests.
        image = base64.b64encode(png.getvalue()).decode()
        plot.outputs = ({"output_type": "display_data", "metadata": {},
                         "data": {"image/png": image, "text/plain": text}},)
        numbers.outputs = ({"output_type": "stream", "name": "stdout", "text": text + "\n"},)

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values())[:4]), widgets.HBox(list(controls.values())[4:]),
                        widgets.HBox([plot, numbers])])
    box.redraw, box.controls, box.plot, box.numbers = redraw, controls, plot, numbers  # for tests
    return box


def grid(folder: Path) -> list[Choice]:
    """Draw every choice of ``GRID`` into ``folder/STEM.png``; the choices, in file order."""
    folder.mkdir(parents=True, exist_ok=True)
    choices = [Choice(**dict(zip(GRID, values))) for values in itertools.product(*GRID.values())]
    for choice in choices:
        fig, numbers = picture(replace(choice))
        fig.savefig(folder / f"{choice.stem()}.png", dpi=80)
        # Without the last line, the time the measurement took: a page should not quote the build machine.
        (folder / f"{choice.stem()}.txt").write_text(numbers.rsplit("\n", 1)[0] + "\n")
    return choices
