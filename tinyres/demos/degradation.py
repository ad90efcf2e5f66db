"""``tinyres demo degradation``: plain vs residual nets of 20 and 56 layers, trained.

The ResNet paper's Figure 1 (and 6): on CIFAR-10 a 56-layer *plain* net ends with a
higher training error than a 20-layer one, although the deeper net could copy the
shallower one and set its extra layers to the identity. That is the *degradation*
problem, and it is not overfitting: the training error is worse. With shortcuts the
56-layer net trains at least as well as the 20-layer one.

This demo trains plain-20, plain-56, ResNet-20 and ResNet-56 (``tinyres.models``, the
CIFAR family with batch norm and shortcut A) with one recipe on the 8x8 digits data
(``tinyres.data.load_digits``) using the library's training loop
(``tinyres.training.train``), and records, after every step, the gradient norm of every
weight. It draws the training loss and test error per epoch and the per-layer gradient
norms, and states what the run shows, whatever that is: on a data set this small and
easy, the gap can be small, or absent.

Trained weights are cached: each run lives in ``<out>/runs/<model>-<hash>/`` where the
hash covers everything that determines the weights (model, recipe, data, seed). A
finished run is loaded instead of retrained; an interrupted one resumes from its last
epoch (the training loop's exact resume).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import tinyres as tr
from tinyres import nn
from tinyres.arguments import checked_int, non_negative_float, positive_int, seed
from tinyres.data import ArrayDataset, load_digits
from tinyres.demos.report import caption, out_dir, write_outputs
from tinyres.models import CifarResNet
from tinyres.training import TrainConfig, train

NAME = "degradation"
HELP = "train plain-20/56 and ResNet-20/56 on the digits data: loss, test error, gradient norms"


@dataclass(frozen=True)
class Run:
    """One net to train: ``depth`` (6n+2) and whether its blocks have shortcuts."""

    depth: int
    residual: bool

    @property
    def name(self) -> str:
        """A short name for tables and legends.

        >>> Run(56, residual=False).name
        'plain-56'
        """
        return f"{'resnet' if self.residual else 'plain'}-{self.depth}"

    def build(self, in_channels: int, num_classes: int) -> CifarResNet:
        block = "basic" if self.residual else "plain"
        return CifarResNet(self.depth, num_classes, block=block, in_channels=in_channels)


def runs_for(depths: tuple[int, ...]) -> list[Run]:
    """Plain and residual nets of each depth, plain first."""
    return [Run(d, residual) for residual in (False, True) for d in depths]


def recipe(
    quick: bool, epochs: int | None, seed: int, batch: int | None = None, lr: float = 0.1
) -> TrainConfig:
    """The paper's recipe (SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at
    50% and 75% of training), scaled to the digits: 1-pixel pad-and-crop, no flips (a
    mirrored digit is another symbol or none), and batch 32 instead of 128, so that the
    1,438 training images give 45 steps per epoch, not 12 (the paper trains for 64k steps;
    with batch 128, 20 epochs are 240 steps, too few for the 56-layer nets to get far)."""
    epochs = epochs or (2 if quick else 20)
    batch = batch or (64 if quick else 32)
    return TrainConfig(epochs=epochs, batch_size=batch, lr=lr, momentum=0.9,
                       weight_decay=1e-4, padding=1, flip=False, seed=seed)


def digits(quick: bool) -> tuple[ArrayDataset, ArrayDataset, str]:
    """The digits split; ``quick`` keeps the first 128 training and 64 test images."""
    train_data, test_data = load_digits()
    if quick:
        train_data = ArrayDataset(train_data.images[:128], train_data.labels[:128])
        test_data = ArrayDataset(test_data.images[:64], test_data.labels[:64])
    return train_data, test_data, f"digits:{len(train_data)}/{len(test_data)}"


def run_key(run: Run, config: TrainConfig, data: str) -> str:
    """A short hash of everything that determines the trained weights.

    >>> run_key(Run(20, True), TrainConfig(epochs=2), "digits:128/64") == run_key(
    ...     Run(20, True), TrainConfig(epochs=2), "digits:128/64")
    True
    >>> key = run_key(Run(20, True), TrainConfig(epochs=2), "x")
    >>> key != run_key(Run(20, True), TrainConfig(epochs=3), "x"), len(key)
    (True, 10)
    """
    settings = {"run": asdict(run), "config": asdict(config), "data": data, "tinyres": tr.__version__}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


class GradientRecorder:
    """After every optimizer step, the gradient norm of every conv and linear weight,
    averaged over each epoch. ``fit`` calls the step hook after ``optimizer.step()``
    and before the next ``zero_grad()``, so the weights' ``.grad`` are the step's."""

    def __init__(self, model: nn.Module):
        self.weights = [
            (n, p) for n, p in model.named_parameters() if n.endswith("weight") and p.ndim in (2, 4)
        ]
        self.names = [n for n, _ in self.weights]
        self.per_epoch: list[list[float]] = []  # epoch -> mean norm per weight
        self._sum = np.zeros(len(self.weights))
        self._steps = 0

    def on_step(self, step: int, loss: float) -> None:
        self._sum += [float(np.linalg.norm(p.grad.numpy().astype(np.float64))) for _, p in self.weights]
        self._steps += 1

    def end_epoch(self) -> None:
        self.per_epoch.append((self._sum / max(self._steps, 1)).tolist())
        self._sum[:] = 0
        self._steps = 0


def train_or_load(
    run: Run, config: TrainConfig, train_data: ArrayDataset, test_data: ArrayDataset, data: str,
    runs_dir: Path, progress: bool = True,
) -> tuple[CifarResNet, list[dict[str, Any]], dict[str, Any]]:
    """The trained model, its history and its gradient norms: from the cache, or by training.

    The weights are initialised after ``manual_seed(config.seed)``, so the four nets of
    one recipe start from the same random stream.
    """
    folder = runs_dir / f"{run.name}-{run_key(run, config, data)}"
    tr.manual_seed(config.seed)
    model = run.build(train_data.image_shape[0], train_data.num_classes)
    recorder = GradientRecorder(model)
    norms_file = folder / "grad_norms.json"
    resume = (folder / "checkpoint.npz").is_file()
    if resume and norms_file.is_file():
        recorder.per_epoch = json.loads(norms_file.read_text())["per_epoch"]

    def on_epoch(history: list[dict[str, Any]]) -> None:
        recorder.end_epoch()
        # A resumed run repeats an interrupted epoch: keep one row per finished epoch.
        recorder.per_epoch = recorder.per_epoch[-len(history):] if len(history) else []
        norms_file.write_text(json.dumps({"names": recorder.names, "per_epoch": recorder.per_epoch}))

    history = train(model, train_data, test_data, config, out_dir=folder, resume=resume, label=run.name,
                    on_step=recorder.on_step, on_epoch=on_epoch, progress=progress)
    norms = {"names": recorder.names, "per_epoch": recorder.per_epoch[: len(history)]}
    return model, history, norms | {"folder": str(folder)}


def trained_models(
    depths: tuple[int, ...], config: TrainConfig, quick: bool, runs_dir: Path, progress: bool = True,
    select: Callable[[Run], bool] = lambda run: True,
) -> tuple[dict[Run, tuple[CifarResNet, list, dict]], ArrayDataset]:
    """Every selected run of ``runs_for(depths)``, trained or loaded; and the test data."""
    train_data, test_data, data = digits(quick)
    out = {}
    for run in runs_for(depths):
        if select(run):
            print(f"{run.name}: {config.epochs} epochs on {data} (cached under {runs_dir})")
            out[run] = train_or_load(run, config, train_data, test_data, data, runs_dir, progress)
    return out, test_data


def report_data(config: TrainConfig, depths: tuple[int, ...], models: dict[Run, tuple]) -> dict[str, Any]:
    """The JSON-able data of trained runs (what ``trained_models`` returns): the recipe, the
    depths, and per run (``Run.name``) its training history and gradient norms."""
    return {"recipe": asdict(config), "depths": list(depths),
            "runs": {run.name: {"history": history, "grad_norms": norms}
                     for run, (_, history, norms) in models.items()}}


def results(
    depths: tuple[int, ...], config: TrainConfig, quick: bool, runs_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Everything the demo reports, as JSON-able data (``report_data``), the nets trained or
    loaded by ``trained_models``."""
    models, _ = trained_models(depths, config, quick, runs_dir, progress)
    return report_data(config, depths, models)


# ---- report: made from the data of ``results`` --------------------------------------------


def table(data: dict[str, Any]) -> str:
    lines = [f"after {data['recipe']['epochs']} epochs (train loss and error: means over the last epoch's "
             "batches, train mode)",
             f"{'model':<12}{'train loss':>12}{'train error':>13}{'test error':>12}{'min test error':>16}"]
    for name, r in data["runs"].items():
        history = r["history"]
        last = history[-1]
        best = min(1 - h["test_acc"] for h in history)
        lines.append(f"{name:<12}{last['train_loss']:>12.4f}{1 - last['train_acc']:>13.2%}"
                     f"{1 - last['test_acc']:>12.2%}{best:>16.2%}")
    return "\n".join(lines)


def _compare(deep: list[dict], shallow: list[dict], key: str) -> str:
    """How the deep net's last epoch compares with the shallow one's, in ``key``."""
    a, b = deep[-1][key], shallow[-1][key]
    if key != "train_loss":
        a, b = 1 - a, 1 - b
        return f"{'higher' if a > b else 'lower' if a < b else 'the same'} ({a:.1%} vs {b:.1%})"
    return f"{'higher' if a > b else 'lower' if a < b else 'the same'} ({a:.3g} vs {b:.3g})"


def sentence(data: dict[str, Any]) -> str:
    """What the run shows: deep vs shallow final training loss and test error, per family."""
    shallow, deep = min(data["depths"]), max(data["depths"])
    parts = []
    for residual, family in ((False, "plain"), (True, "resnet")):
        d = data["runs"][Run(deep, residual).name]["history"]
        s = data["runs"][Run(shallow, residual).name]["history"]
        parts.append(f"{family}-{deep} ends with a {_compare(d, s, 'train_loss')} training loss "
                     f"and a {_compare(d, s, 'train_acc')} training error than {family}-{shallow}, "
                     f"and a {_compare(d, s, 'test_acc')} test error")
    return f"After {data['recipe']['epochs']} epochs, " + "; ".join(parts) + "."


def title(data: dict[str, Any]) -> str:
    c = data["recipe"]
    return (f"Plain vs residual CIFAR-family nets on the digits ({c['epochs']} epochs, batch "
            f"{c['batch_size']}, SGD lr {c['lr']}, momentum {c['momentum']}, seed {c['seed']})")


def figure(data: dict[str, Any], words: str, title: str) -> Figure:
    runs = {run: data["runs"][run.name] for run in runs_for(tuple(data["depths"]))}
    fig = Figure(figsize=(12, 8))
    grid = fig.add_gridspec(2, len(runs))
    half = len(runs) // 2
    loss_ax = fig.add_subplot(grid[0, :half])
    err_ax = fig.add_subplot(grid[0, half:])
    depths = sorted({run.depth for run in runs})
    for run, r in runs.items():
        history = r["history"]
        epochs = [h["epoch"] for h in history]
        style = {"color": "tab:red" if run.residual else "tab:blue",
                 "lw": 1.0 + 1.2 * depths.index(run.depth), "ls": "-" if run.residual else "--",
                 "label": run.name}
        loss_ax.plot(epochs, [h["train_loss"] for h in history], **style)
        err_ax.plot(epochs, [100 * (1 - h["test_acc"]) for h in history], **style)
    loss_ax.set(yscale="log", xlabel="epoch", ylabel="training loss (epoch mean)", title="training loss")
    err_ax.set(xlabel="epoch", ylabel="test error (%)", title="test error")
    for ax in (loss_ax, err_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    grad_axes = [fig.add_subplot(grid[1, 0])]
    grad_axes += [fig.add_subplot(grid[1, i], sharey=grad_axes[0]) for i in range(1, len(runs))]
    for ax, (run, r) in zip(grad_axes, runs.items()):
        per_epoch = r["grad_norms"]["per_epoch"]
        picks = sorted({0, len(per_epoch) // 2, len(per_epoch) - 1})
        for k, color in zip(picks, ["tab:green", "tab:olive", "tab:purple"]):
            layers = range(1, len(per_epoch[k]) + 1)
            ax.plot(layers, per_epoch[k], color=color, lw=1.2, label=f"epoch {k + 1}")
        ax.set(yscale="log", title=run.name, xlabel="layer index (conv, last = fc)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    grad_axes[0].set_ylabel("|dLoss/dW| per layer (epoch mean)")
    caption(fig, words, title, room=0.06)
    return fig


# ---- command line ---------------------------------------------------------------------------


def check_depth(depth: int) -> None:
    """The CIFAR family's depths: 6n+2 weighted layers."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"expected a depth 6n+2 >= 8 (8, 14, 20, 32, ...), got {depth}")


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that pick the trained nets (shared with ``demo lesion``, which reuses them)."""
    parser.add_argument("--depths", type=checked_int(check_depth), nargs=2, default=None,
                        metavar=("SHALLOW", "DEEP"),
                        help="two 6n+2 depths (default: 20 56; --quick: 8 14)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="default: 20 (--quick: 2)")
    parser.add_argument("--batch", type=positive_int, default=None, help="default: 32 (--quick: 64)")
    parser.add_argument("--lr", type=non_negative_float, default=0.1, help="initial learning rate")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="depths 8 and 14, 2 epochs, 128 training images: a smoke test for CI")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument("--out", default="results/degradation", help="output folder (runs cached inside)")


def depths_of(args: argparse.Namespace) -> tuple[int, int]:
    return tuple(sorted(args.depths)) if args.depths else ((8, 14) if args.quick else (20, 56))


def run(args: argparse.Namespace) -> int:
    config = recipe(args.quick, args.epochs, args.seed, args.batch, args.lr)
    folder = out_dir(args.out)
    data = results(depths_of(args), config, args.quick, folder / "runs", not args.no_progress)
    words = sentence(data)
    # The JSON file keeps its key order: the sentence before the long runs.
    record = {"recipe": data["recipe"], "depths": data["depths"], "sentence": words, "runs": data["runs"]}
    write_outputs(folder, "degradation", table(data) + "\n" + words, record, figure(data, words, title(data)))
    return 0
