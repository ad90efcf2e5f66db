"""``tinyres summary MODEL --input N,C,H,W``: print a model's layers, shapes, parameters, MACs."""

from __future__ import annotations

import argparse
import math

from tinyres.arguments import positive_int
from tinyres.model_summary import summary
from tinyres.models import MODELS

NAME = "summary"
HELP = "print a model's layers with output shapes, parameters and multiply-accumulates"
# The forward pass holds a few activations of up to ~20x the input's size (ResNet-18's
# stem at 224x224); 2**24 input elements keep that within a few GB.
MAX_INPUT_ELEMENTS = 2**24


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224" -> (1, 3, 224, 224)``, with a clear error for anything else."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input takes comma-separated sizes like 1,3,224,224, got {text!r}"
        ) from None
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--input takes four positive sizes N,C,H,W, got {text!r}")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise argparse.ArgumentTypeError(
            f"--input {text} has {math.prod(shape):.3g} elements; summary runs the model once on it, "
            f"so at most {MAX_INPUT_ELEMENTS} (e.g. 64,3,224,224)"
        )
    return shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=f"one of: {', '.join(MODELS)}")
    parser.add_argument(
        "--input", type=parse_shape, required=True, metavar="N,C,H,W",
        help="input shape, e.g. 1,3,224,224 (ImageNet) or 1,3,32,32 (CIFAR)",
    )
    parser.add_argument("--num-classes", type=positive_int, default=None,
                        help="classifier outputs (model default)")
    parser.add_argument("--depth", type=positive_int, default=None,
                        help="show modules at most this deep (1: stages)")


def run(args: argparse.Namespace) -> int:
    if args.model not in MODELS:
        raise SystemExit(f"unknown model {args.model!r}; known models: {', '.join(MODELS)}")
    build = MODELS[args.model]
    model = build() if args.num_classes is None else build(num_classes=args.num_classes)
    print(summary(model, args.input, depth=args.depth))
    return 0
