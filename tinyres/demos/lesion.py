"""``tinyres demo lesion``: delete one block of a trained net, measure the test accuracy.

Veit, Wilber and Belongie (2016), "Residual Networks Behave Like Ensembles of Relatively
Shallow Networks": unrolled, a residual net of n blocks is a collection of 2^n paths of
different lengths, because every block's output is x + F(x). Deleting one block (its
output becomes its input, x) removes only the paths through F of that block; the rest
still carry the signal, and the accuracy drops a little. A plain net has a single path,
through every block, so deleting any block changes the input every later layer sees.

The demo loads the trained ResNet and plain net of the deeper depth from
``demo degradation`` (same recipe, same cache, trained there if not yet cached), replaces
each block in turn by the identity, and evaluates the test accuracy (eval mode, so batch
norm uses its running statistics). The first block of stages 2 and 3 changes the shape
(stride 2, more channels) and cannot become the identity; those are skipped, as in the
paper.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np
from matplotlib.figure import Figure

from tinyres import nn
from tinyres.data import ArrayDataset, DataLoader
from tinyres.demos.degradation import Run, add_recipe_arguments, depths_of, recipe, trained_models
from tinyres.demos.report import caption, out_dir, write_outputs
from tinyres.models import CifarResNet
from tinyres.training import evaluate

NAME = "lesion"
HELP = "test accuracy after deleting each single block of a trained ResNet and plain net"

STAGES = ("layer1", "layer2", "layer3")


def deletable(block: nn.Module) -> bool:
    """Whether ``block``'s output has its input's shape, so the identity can replace it."""
    return block.stride == 1 and block.conv1.in_channels == block.conv2.out_channels


def lesion_accuracies(model: CifarResNet, test_data: ArrayDataset) -> list[dict]:
    """For every block (in order): its name and the test accuracy without it (None: kept)."""
    loader = DataLoader(test_data, 512)
    loss_fn = nn.CrossEntropyLoss()
    rows = []
    for stage_name in STAGES:
        stage = getattr(model, stage_name)
        for i, block in enumerate(stage):
            accuracy = None
            if deletable(block):
                stage.add_module(str(i), nn.Identity())  # same slot: the order of blocks is kept
                try:
                    accuracy = evaluate(model, loader, loss_fn)[1]
                finally:
                    stage.add_module(str(i), block)
            rows.append({"block": f"{stage_name}.{i}", "test_acc": accuracy})
    return rows


def results(args: argparse.Namespace) -> dict:
    """Everything the demo reports, as JSON-able data: per net, the intact accuracy and the
    accuracy with each block deleted (``lesion_accuracies``). The nets are ``demo
    degradation``'s deeper pair, from its cache (trained first if missing)."""
    deep = depths_of(args)[1]
    config = recipe(args.quick, args.epochs, args.seed, args.batch, args.lr)
    models, test_data = trained_models(depths_of(args), config, args.quick, out_dir(args.runs),
                                       not args.no_progress, select=lambda r: r.depth == deep)
    nets = {}
    for residual in (True, False):
        model = models[Run(deep, residual)][0]
        intact = evaluate(model, DataLoader(test_data, 512), nn.CrossEntropyLoss())[1]
        nets[Run(deep, residual).name] = {"intact": intact, "lesions": lesion_accuracies(model, test_data)}
    return {"recipe": asdict(config), "depth": deep, "results": nets}


def table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["test accuracy with one block deleted ('-': changes the shape, not deleted)",
             f"{'block':<12}" + "".join(f"{n:>12}" for n in names),
             f"{'(none)':<12}" + "".join(f"{results[n]['intact']:>12.2%}" for n in names)]
    for k, row in enumerate(results[names[0]]["lesions"]):
        cells = []
        for n in names:
            acc = results[n]["lesions"][k]["test_acc"]
            cells.append(f"{'-':>12}" if acc is None else f"{acc:>12.2%}")
        lines.append(f"{row['block']:<12}" + "".join(cells))
    return "\n".join(lines)


def sentence(results: dict[str, dict]) -> str:
    """The range and mean of the accuracies after one deletion, per net, against intact."""
    parts = []
    for name, r in results.items():
        accs = np.array([row["test_acc"] for row in r["lesions"] if row["test_acc"] is not None])
        parts.append(
            f"{name} (intact: {r['intact']:.1%}) scores {accs.min():.1%} to {accs.max():.1%} "
            f"(mean {accs.mean():.1%}) with one of its {len(accs)} deletable blocks deleted"
        )
    return "On the digits test set, " + "; ".join(parts) + "."


def figure(results: dict[str, dict], words: str, title: str) -> Figure:
    fig = Figure(figsize=(11, 5))
    ax = fig.add_subplot()
    for (name, r), color in zip(results.items(), ["tab:red", "tab:blue"]):
        index = np.arange(1, len(r["lesions"]) + 1)
        # A block that could not be deleted has no accuracy (None): NaN leaves a gap in the line.
        accs = np.array([np.nan if row["test_acc"] is None else 100 * row["test_acc"]
                         for row in r["lesions"]])
        ax.plot(index, accs, "o-", color=color, ms=4, lw=1.2, label=f"{name}: one block deleted")
        ax.axhline(100 * r["intact"], color=color, ls=":", lw=1.2, label=f"{name}: intact")
        skipped = index[np.isnan(accs)]
    for k in skipped:
        ax.axvline(k, color="gray", lw=0.6, alpha=0.5)
    ax.set(xlabel="deleted block (grey lines: stage-changing blocks, not deletable)",
           ylabel="test accuracy (%)", title=title, ylim=(0, 100))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    caption(fig, words, width=140)
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)  # the same options as demo degradation pick the same cached nets
    parser.add_argument("--runs", default="results/degradation/runs",
                        help="where demo degradation caches its trained nets")
    parser.add_argument("--out", default="results/lesion", help="output folder")


def run(args: argparse.Namespace) -> int:
    data = results(args)
    words = sentence(data["results"])
    title = (f"Deleting single blocks of trained {data['depth']}-layer nets "
             f"({data['recipe']['epochs']} epochs on the digits)")
    text = table(data["results"]) + "\n" + words
    write_outputs(out_dir(args.out), "lesion", text, data | {"sentence": words},
                  figure(data["results"], words, title))
    return 0
