"""``tinyres draw MODEL-OR-BLOCK --out FILE.png|svg``: a block diagram from the module.

Models are the constructors in ``tinyres.models.MODELS``; blocks are built here in the
sizes a learner meets them (ResNet-50's inner bottleneck is 256 -> 64 -> 256).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tinyres import nn
from tinyres.arguments import int_in
from tinyres.models import MODELS, BasicBlock, Bottleneck, PadShortcut, PlainBlock, PreActBlock
from tinyres.models.blocks import projection_shortcut
from tinyres.viz import draw_block

NAME = "draw"
HELP = "draw a model (as a column of stages) or a residual block to a PNG or SVG file"

BLOCKS: dict[str, Callable[[], nn.Module]] = {
    "basic": lambda: BasicBlock(64, 64),
    "basic-projection": lambda: BasicBlock(64, 128, 2, projection_shortcut(64, 128, 2)),
    "basic-option-a": lambda: BasicBlock(16, 32, 2, PadShortcut(16, 32, 2)),
    "bottleneck": lambda: Bottleneck(256, 64),
    "bottleneck-projection": lambda: Bottleneck(256, 128, 2, projection_shortcut(256, 512, 2)),
    "preact": lambda: PreActBlock(64, 64),
    "preact-projection": lambda: PreActBlock(64, 128, 2, projection_shortcut(64, 128, 2)),
    "plain": lambda: PlainBlock(64, 64),
}

FORMATS = (".png", ".svg")


def known_names() -> list[str]:
    return [*BLOCKS, *MODELS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="MODEL-OR-BLOCK", help=f"one of: {', '.join(known_names())}")
    parser.add_argument("--out", required=True, type=Path, help="output file, .png or .svg")
    parser.add_argument(
        "--input-size", type=int_in(1, 4096), default=None,
        help="image size for a model's shapes (default 224 for ImageNet ResNets, 32 otherwise)",
    )
    # A diagram is about 10 inches tall: 1200 dpi is already a 12,000-pixel image.
    parser.add_argument("--dpi", type=int_in(1, 1200), default=120, help="resolution of a PNG (default 120)")


def run(args: argparse.Namespace) -> int:
    build = BLOCKS.get(args.name) or MODELS.get(args.name)
    if build is None:
        raise SystemExit(f"unknown model or block {args.name!r}; known: {', '.join(known_names())}")
    if args.out.suffix.lower() not in FORMATS:
        raise SystemExit(f"--out must end in .png or .svg, got {str(args.out)!r}")
    fig = draw_block(build(), input_size=args.input_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0
