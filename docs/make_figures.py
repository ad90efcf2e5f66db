"""Remake the README's figures from the current code: ``python docs/make_figures.py [name ...]``.

Each figure the README shows is made the way the README says it is: ``vanishing`` is the
PNG of ``tinyres demo vanishing`` (default settings), ``bottleneck`` the diagram of
``tinyres draw bottleneck``, ``graph`` ``tinyres.viz.draw_graph`` on a small network after
``backward()``. With no names the three are remade (about a minute on 2 cores). The training
curves (``docs/figures/digits-plain20-vs-resnet20.png``) come from two full trainings:
``python benchmarks/train_digits.py`` remakes them (several minutes; benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``import tinyres`` work from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import tinyres as tr
from tinyres import nn
from tinyres.cli import main as tinyres_main
from tinyres.nn import functional as F
from tinyres.viz import draw_graph, trace

DOCS = Path(__file__).resolve().parent


def vanishing(path: Path) -> None:
    with tempfile.TemporaryDirectory() as out:
        assert tinyres_main(["demo", "vanishing", "--out", out]) == 0
        shutil.copy2(Path(out) / "vanishing.png", path)


def bottleneck(path: Path) -> None:
    assert tinyres_main(["draw", "bottleneck", "--out", str(path), "--dpi", "100"]) == 0


def graph(path: Path) -> None:
    """A two-layer network's loss on a small batch: every node with its gradient's norm."""
    tr.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = tr.tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    loss = F.cross_entropy(model(x), tr.tensor(np.array([0, 2, 1, 0, 2])))
    recorded = trace(loss, params=dict(model.named_parameters()))  # before backward, which frees it
    loss.backward()
    draw_graph(recorded, show_grad_norms=True).savefig(path, dpi=100)


FIGURES: dict[str, tuple[Path, Callable[[Path], None]]] = {
    "vanishing": (DOCS / "vanishing.png", vanishing),
    "bottleneck": (DOCS / "bottleneck.png", bottleneck),
    "graph": (DOCS / "graph.png", graph),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"figures to make (default all): {', '.join(FIGURES)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; known: {', '.join(FIGURES)}")
    for name in args.names or FIGURES:
        path, make = FIGURES[name]
        make(path)
        print(f"wrote {path.relative_to(DOCS.parent)} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
