"""Make the figures the lessons show: ``python lessons/make_figures.py [name ...]``.

Every PNG under ``lessons/figures/`` is drawn by one function here, from measurements
made with tinyres when the script runs (or, for trainings, from the demos' cached
results). With no arguments every figure is remade; give names to remake a few.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

if __package__ in (None, ""):  # run as a script: make ``import tinyres`` work from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinyres as tr
from tinyres import nn
from tinyres.data import DataLoader
from tinyres.demos import degradation
from tinyres.demos.lesion import deletable, lesion_accuracies
from tinyres.demos.vanishing import Setting, measure
from tinyres.models import BasicBlock, Bottleneck, resnet18
from tinyres.training import evaluate
from tinyres.viz import draw_block, draw_graph, trace

FIGURE_DIR = Path(__file__).resolve().parent / "figures"
DPI = 100
# Random draws per number of deleted blocks in the lesion figure: enough for error bars
# (the committed figure and JSON predate this and have 5; regenerating them takes the
# trained nets of `tinyres demo degradation`, about 15 minutes of training).
LESION_DRAWS = 30
# The cache of ``tinyres demo degradation`` (default recipe): the lesson figures and the demo
# share the trained nets, so neither retrains what the other has trained.
DEGRADATION_RUNS = Path(__file__).resolve().parent.parent / "results" / "degradation" / "runs"


def finite_difference_error(dtype: type, eps: float, central: bool, x: float = 0.7) -> float:
    """|numeric - exact| derivative of tanh at ``x``, with the forward pass in ``dtype``."""

    def f(v: float) -> float:
        return float(tr.tensor(np.array([v], dtype=dtype)).tanh().detach().numpy()[0])

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
    ax.set_title("d tanh(x)/dx at x = 0.7:\ntruncation error (left) vs rounding error (right)", fontsize=11)
    ax.invert_xaxis()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def autograd_graph() -> Figure:
    """Lesson 1: the graph of tanh(sum(w * x) + c) with each node's gradient norm."""
    w = tr.tensor([0.5, -1.0], requires_grad=True)
    c = tr.tensor(1.0, requires_grad=True)
    L = ((w * tr.tensor([2.0, 3.0])).sum() + c).tanh()
    graph = trace(L, params={"w": w, "c": c})
    L.backward()
    return draw_graph(graph, show_grad_norms=True)


def im2col_picture() -> Figure:
    """Lesson 5: im2col of a 4x4 one-channel image, 3x3 kernel, stride 1: four fields, four rows."""
    from matplotlib.patches import Rectangle

    from tinyres.kernels.im2col_numpy import im2col

    x = np.arange(16.0).reshape(1, 1, 4, 4)
    cols = im2col(x, (3, 3), (1, 1), (0, 0), (1, 1))  # (1, 1, 2, 2, 3, 3)
    rows = cols.reshape(4, 9)  # one row per output pixel (oh, ow), one column per tap (i, j)
    colours = ["#e06666", "#6fa8dc", "#93c47d", "#f6b26b"]
    fig = Figure(figsize=(9, 3.6))
    image, matrix = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.3]})
    for ax in (image, matrix):
        ax.set_aspect("equal")
        ax.axis("off")
    for h in range(4):
        for w in range(4):
            image.add_patch(Rectangle((w, 3 - h), 1, 1, fill=False, lw=0.8))
            image.text(w + 0.5, 3.5 - h, f"{x[0, 0, h, w]:.0f}", ha="center", va="center")
    for k, (oh, ow) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        inset = 0.06 * (k + 1)  # the fields overlap: nest their outlines
        image.add_patch(Rectangle((ow + inset, 1 - oh + inset), 3 - 2 * inset, 3 - 2 * inset, fill=False,
                                  lw=2, ec=colours[k]))
        for j in range(9):
            matrix.add_patch(Rectangle((j, 3 - k), 1, 1, fc=colours[k], alpha=0.35, ec="black", lw=0.8))
            matrix.text(j + 0.5, 3.5 - k, f"{rows[k, j]:.0f}", ha="center", va="center")
        matrix.text(-0.2, 3.5 - k, f"output ({oh}, {ow})", ha="right", va="center", color=colours[k])
    for j in range(9):
        matrix.text(j + 0.5, 4.15, f"({j // 3},{j % 3})", ha="center", fontsize=7)
    image.set(xlim=(-0.1, 4.1), ylim=(-0.1, 4.1), title="input x (4x4), four 3x3 fields")
    matrix.set(xlim=(-2.6, 9.1), ylim=(-0.1, 4.5),
               title="cols: one row per output pixel, one column per tap (i, j)")
    fig.tight_layout()
    return fig


def basic_block() -> Figure:
    """Lesson 7: the residual block, drawn from a live ``BasicBlock``."""
    return draw_block(BasicBlock(64, 64))


def bottleneck_block() -> Figure:
    """Lesson 8: the seeds' bottleneck, 256 -> 64 -> 64 -> 256 channels, identity shortcut."""
    return draw_block(Bottleneck(256, 64))


def resnet18_stages() -> Figure:
    """Lesson 9: ResNet-18 as a column of stages with output shapes for a 224x224 image."""
    return draw_block(resnet18())


def vanishing_settings() -> Figure:
    """Lesson 10: gradient norm at every block's input, plain vs residual, four settings.

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


@functools.cache
def degradation_runs() -> tuple:
    """(recipe, {Run: (model, history, grad norms)}, test data) of the demo's default run:
    plain-20/56 and ResNet-20/56, 20 epochs on the digits. Loaded from the demo's cache, or
    trained into it (about 15 minutes on two cores)."""
    config = degradation.recipe(quick=False, epochs=None, seed=0)
    results, test_data = degradation.trained_models((20, 56), config, False, DEGRADATION_RUNS, progress=False)
    return config, results, test_data


def write_numbers(name: str, numbers: dict) -> None:
    """The numbers a lesson quotes from a long run, next to its figure (the lesson checks them)."""
    (FIGURE_DIR / f"{name}.json").write_text(json.dumps(numbers, indent=1) + "\n")


def degradation_curves() -> Figure:
    """Lesson 11: the demo's figure of the default run, and its numbers as JSON."""
    config, results, _ = degradation_runs()
    numbers = {"recipe": {k: v for k, v in vars(config).items() if k != "milestones"}, "runs": {}}
    for run, (model, history, norms) in results.items():
        weights = dict(model.named_parameters())
        first, last = norms["names"][0], norms["names"][-2]  # stem conv, last conv (before fc)
        i, j = norms["names"].index(first), norms["names"].index(last)
        numbers["runs"][run.name] = {
            "train_loss": [h["train_loss"] for h in history],
            "train_error": [1 - h["train_acc"] for h in history],
            "test_error": [1 - h["test_acc"] for h in history],
            "first_layer": first,
            "last_layer": last,
            "grad_first_over_last": [epoch[i] / epoch[j] for epoch in norms["per_epoch"]],
            "weight_norm_first": float(np.linalg.norm(weights[first].detach().numpy())),
            "weight_norm_last": float(np.linalg.norm(weights[last].detach().numpy())),
        }
    write_numbers("11-degradation", numbers)
    data = degradation.report_data(config, (20, 56), results)
    words = degradation.sentence(data)
    title = (f"Plain vs residual nets on the digits ({config.epochs} epochs, batch {config.batch_size}, "
             f"SGD lr {config.lr}, momentum {config.momentum}, seed {config.seed})")
    return degradation.figure(data, words, title)


# Lesson 14's full run: the command lines a learner types, on a copy of the reference solutions.
CAPSTONE_TRAIN = ["train", "--model", "resnet20", "--shortcut", "B", "--data", "digits", "--epochs", "10",
                  "--batch-size", "32", "--seed", "0", "--no-progress"]
CAPSTONE_VANISHING = ["demo", "vanishing", "--norm", "batch", "--dtype", "float64", "--depths", "20", "56"]


def _tinyres(arguments: list[str], log: Path) -> None:
    """Run ``python -m tinyres ARGUMENTS`` from the repository root, its output into ``log``."""
    import os
    import subprocess

    before = os.getloadavg()[0]
    with log.open("w") as out:
        subprocess.run([sys.executable, "-m", "tinyres", *arguments], cwd=FIGURE_DIR.parents[1],
                       check=True, stdout=out, stderr=subprocess.STDOUT)
    log.with_suffix(".load").write_text(f"{before} {os.getloadavg()[0]}\n")


def capstone() -> Figure:
    """Lesson 14: ResNet-20 trained on the digits by the library and by the reference solutions
    through ``--mine``; the vanishing demo on both; the step-time benchmark. About 30 minutes on
    two cores, most of it the two trainings."""
    import shutil
    import subprocess
    import tempfile

    work = Path(tempfile.mkdtemp())
    folder = work / "mine"
    folder.mkdir()
    for f in (FIGURE_DIR.parent / "solutions").glob("ex*.py"):
        shutil.copy(f, folder / f.name)
    for who, extra in (("mine", ["--mine", str(folder)]), ("library", [])):
        _tinyres([*CAPSTONE_TRAIN, "--out", str(work / f"train-{who}"), *extra], work / f"train-{who}.out")
        _tinyres([*CAPSTONE_VANISHING, "--out", str(work / f"vanishing-{who}"), *extra],
                 work / f"vanishing-{who}.out")
    subprocess.run([sys.executable, str(FIGURE_DIR.parents[1] / "benchmarks" / "bench_course.py"),
                    "--json", str(work / "bench.json")], check=True)
    return capstone_figure(capstone_numbers(work))


def capstone_numbers(work: Path) -> dict:
    """Lesson 14's numbers from the outputs of ``capstone``'s commands in ``work``, written as JSON."""
    numbers: dict = {"train_command": " ".join(CAPSTONE_TRAIN),
                     "vanishing_command": " ".join(CAPSTONE_VANISHING)}
    for who in ("mine", "library"):
        history = json.loads((work / f"train-{who}" / "metrics.json").read_text())
        numbers[f"train_{who}"] = {
            "test_acc": [h["test_acc"] for h in history], "train_loss": [h["train_loss"] for h in history],
            "seconds": sum(h["seconds"] for h in history),
            "load": [float(v) for v in (work / f"train-{who}.load").read_text().split()],
            "stdout": (work / f"train-{who}.out").read_text(),
        }
        data = json.loads((work / f"vanishing-{who}" / "vanishing.json").read_text())
        numbers[f"vanishing_{who}"] = {"nets": data["settings"][0]["nets"], "seconds": data["seconds"]}
    numbers["step_ms"] = json.loads((work / "bench.json").read_text())
    write_numbers("14-your-own-resnet", numbers)
    return numbers


def capstone_figure(numbers: dict) -> Figure:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    for who, label in (("library", "the library's pieces"), ("mine", "your pieces (--mine)")):
        acc = numbers[f"train_{who}"]["test_acc"]
        ax.plot(range(1, len(acc) + 1), [1 - a for a in acc], label=label, ls="-" if who == "mine" else "--")
    ax.set(xlabel="epoch", ylabel="test error", yscale="log", title="ResNet-20 on the digits")
    ax.legend()
    fig.tight_layout()
    return fig


def delete_blocks(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """Replace the blocks ``names`` (e.g. "layer1.3") by the identity; returns them for putting back."""
    removed = {}
    for name in names:
        stage, index = name.split(".")
        removed[name] = getattr(model, stage)[int(index)]
        getattr(model, stage).add_module(index, nn.Identity())
    return removed


def lesion_curves() -> Figure:
    """Lesson 12: test accuracy with one block deleted, and with k random blocks deleted."""
    _, results, test_data = degradation_runs()
    loader = DataLoader(test_data, 512)
    rng = np.random.default_rng(0)
    numbers = {}
    fig = Figure(figsize=(11, 4.4))
    one, many = fig.subplots(1, 2)
    colours = {"resnet-56": "tab:red", "resnet-20": "tab:orange",
               "plain-56": "tab:blue", "plain-20": "tab:cyan"}
    for run, (model, _, _) in results.items():
        intact = evaluate(model, loader, nn.CrossEntropyLoss())[1]
        single = lesion_accuracies(model, test_data)
        blocks = [f"{s}.{i}" for s in ("layer1", "layer2", "layer3") for i, b in enumerate(getattr(model, s))
                  if deletable(b)]
        random_k, random_k_sem = {}, {}
        for k in range(1, min(10, len(blocks)) + 1):
            accs = []
            for _ in range(LESION_DRAWS):
                chosen = list(rng.choice(blocks, size=k, replace=False))
                removed = delete_blocks(model, chosen)
                accs.append(evaluate(model, loader, nn.CrossEntropyLoss())[1])
                for name, block in removed.items():
                    stage, index = name.split(".")
                    getattr(model, stage).add_module(index, block)
            random_k[k] = float(np.mean(accs))
            random_k_sem[k] = float(np.std(accs, ddof=1) / np.sqrt(len(accs)))  # standard error of the mean
        numbers[run.name] = {"intact": intact, "single": single, "draws": LESION_DRAWS, "random_k": random_k,
                             "random_k_sem": random_k_sem}
        colour = colours[run.name]
        accs = [np.nan if r["test_acc"] is None else 100 * r["test_acc"] for r in single]
        one.plot(range(1, len(accs) + 1), accs, "o-", ms=3, lw=1.1, color=colour, label=run.name)
        one.axhline(100 * intact, color=colour, ls=":", lw=1)
        many.errorbar([0, *random_k], [100 * intact, *(100 * a for a in random_k.values())],
                      yerr=[0, *(100 * s for s in random_k_sem.values())], fmt="o-", ms=3, capsize=2,
                      color=colour, label=run.name)
    write_numbers("12-lesion", numbers)
    one.set(xlabel="deleted block (gaps: stage-changing blocks)", ylabel="test accuracy (%)", ylim=(0, 100),
            title="one block deleted (dotted: intact)")
    many.set(xlabel=f"number of blocks deleted at random (mean ± s.e. of {LESION_DRAWS} draws)",
             ylim=(0, 100), title="k random blocks deleted")
    for ax in (one, many):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[], Figure]] = {
    "01-graph": autograd_graph,
    "03-finite-differences": finite_differences,
    "05-im2col": im2col_picture,
    "07-basic-block": basic_block,
    "08-bottleneck-block": bottleneck_block,
    "09-resnet18": resnet18_stages,
    "10-vanishing": vanishing_settings,
    "11-degradation": degradation_curves,
    "12-lesion": lesion_curves,
    "14-your-own-resnet": capstone,
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
