"""A training history on disk: metrics as CSV and JSON, and a plot of the curves.

A history is a list of per-epoch dicts with the same keys (``epoch``, ``lr``,
``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ...), as
``tinyres.training.fit`` returns it. Files are replaced atomically
(``tinyres.serialization.write_atomically``), so a reader, a Ctrl-C or a full disk
never leaves half a file.

>>> import json, os, tempfile
>>> run = [{"epoch": 1, "train_loss": 1.5, "train_acc": 0.5, "test_loss": 1.2, "test_acc": 0.6},
...        {"epoch": 2, "train_loss": 0.9, "train_acc": 0.7, "test_loss": 1.0, "test_acc": 0.7}]
>>> out = tempfile.mkdtemp()
>>> write_history(run, out)
>>> open(os.path.join(out, "metrics.csv")).read().splitlines()[0]
'epoch,train_loss,train_acc,test_loss,test_acc'
>>> json.load(open(os.path.join(out, "metrics.json")))[1]["test_acc"]
0.7
>>> plot_history({"resnet20": run}, os.path.join(out, "curves.png"))
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tinyres.serialization import write_atomically


def write_history(history: list[dict[str, Any]], out_dir: str | os.PathLike) -> None:
    """Write ``metrics.csv`` (one row per epoch) and ``metrics.json`` into ``out_dir``."""
    out = Path(out_dir)
    text = io.StringIO()
    if history:
        writer = csv.DictWriter(text, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
    write_atomically(out / "metrics.csv", lambda f: f.write(text.getvalue().encode()))
    write_atomically(out / "metrics.json", lambda f: f.write((json.dumps(history, indent=1) + "\n").encode()))


def plot_history(runs: dict[str, list[dict[str, Any]]], path: str | os.PathLike, title: str = "") -> None:
    """Plot loss and error (%) per epoch, both on log scales, for one or more runs into a PNG.

    Training curves are dashed, test curves solid, one colour per run, as in the
    ResNet paper's figures. Uses Matplotlib's Agg canvas directly (no pyplot), so it
    works without a display and leaves no global figure state behind.
    """
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, err_ax = fig.subplots(1, 2)
    for i, (label, history) in enumerate(runs.items()):
        color = f"C{i}"
        epochs = [h["epoch"] for h in history]
        for split, style in (("train", "--"), ("test", "-")):
            loss_ax.plot(epochs, [h[f"{split}_loss"] for h in history], style, color=color,
                         label=f"{label} {split}")
            err_ax.plot(epochs, [100 * (1 - h[f"{split}_acc"]) for h in history], style, color=color,
                        label=f"{label} {split}")
    # Log scales: the last epochs' differences (a few %, a few images) would be flat
    # lines on a linear axis next to the first epochs' 90%. An error of exactly 0 is
    # not drawn.
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log")
    err_ax.set(xlabel="epoch", ylabel="error (%)", yscale="log")
    for ax in (loss_ax, err_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png"))
