"""``tinyres train --model resnet20 --data digits``: train a CIFAR-style network.

Writes into ``--out`` (default ``runs/MODEL-DATA``): ``checkpoint.npz`` after every
epoch, ``metrics.csv``, ``metrics.json`` and ``curves.png``. ``--resume`` continues
from the checkpoint there and ends with the same weights and metrics as a run that
was never stopped; Ctrl-C keeps the last end-of-epoch checkpoint.

Data:

- ``digits``: scikit-learn's 8x8 handwritten digits (``pip install 'tinyres[digits]'``),
  fed at 8x8 into a 1-channel network (the three stages see 8x8, 4x4, 2x2 maps);
  augmentation pads 1 pixel (the paper's 4/32 of the side) and crops, without
  flips (a mirrored digit is not the same digit);
- ``cifar10``: the official python-version files in ``--data-dir``, with the
  paper's 4-pixel pad, random crop and horizontal flip.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

from tinyres import course, creation
from tinyres.arguments import int_in, non_negative_float, positive_float, positive_int, seed
from tinyres.data import download_cifar10, load_cifar10, load_digits
from tinyres.data.cifar10 import URL as CIFAR_URL
from tinyres.kernels.threads import set_num_threads
from tinyres.models import MODELS
from tinyres.training import TrainConfig, train

NAME = "train"
HELP = "train a CIFAR-style ResNet or plain network on digits or CIFAR-10, with checkpoints and curves"

# The training command builds the CIFAR family (6n+2 layers); the ImageNet ResNets
# expect 224x224 inputs and take no in_channels option.
CIFAR_MODELS = {name: build for name, build in MODELS.items() if build.__module__ == "tinyres.models.cifar"}
AUGMENTATION = {"digits": (1, False), "cifar10": (4, True)}  # (padding, flip)


def parse_milestones(text: str) -> tuple[int, ...]:
    try:
        milestones = tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--milestones takes comma-separated epochs like 8,12, got {text!r}"
        ) from None
    if any(m < 1 for m in milestones):
        raise argparse.ArgumentTypeError(f"--milestones must be positive epochs, got {text!r}")
    return milestones


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="resnet20", choices=sorted(CIFAR_MODELS), metavar="MODEL",
                        help=f"network (default resnet20); one of: {', '.join(CIFAR_MODELS)}")
    parser.add_argument("--shortcut", choices=["A", "B"], default=None,
                        help="shortcut type of residual models (default: the model's, A)")
    parser.add_argument("--data", choices=["digits", "cifar10"], default="digits", help="data set")
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 directory (cifar-10-batches-py or its parent; with --download "
                             "default ./data)")
    parser.add_argument("--download", action="store_true",
                        help="fetch CIFAR-10 (170 MB) into --data-dir first, verified by its MD5; "
                             "an interrupted download resumes")
    parser.add_argument("--cifar-url", default=CIFAR_URL, help="where --download fetches from (a mirror)")
    parser.add_argument("--epochs", type=positive_int, default=30)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=non_negative_float, default=0.1, help="initial learning rate")
    parser.add_argument("--momentum", type=non_negative_float, default=0.9)
    parser.add_argument("--weight-decay", type=non_negative_float, default=5e-4)
    parser.add_argument("--nesterov", action="store_true")
    parser.add_argument("--schedule", choices=["multistep", "cosine"], default="cosine",
                        help="cosine annealing to 0 (default) or the paper's step decay (multistep)")
    parser.add_argument("--milestones", type=parse_milestones, default=None, metavar="E1,E2",
                        help="epochs at which multistep divides the rate (default: 50%% and 75%%)")
    parser.add_argument("--gamma", type=positive_float, default=0.1, help="multistep factor")
    parser.add_argument("--no-augment", action="store_true", help="no padding, cropping or flipping")
    parser.add_argument("--seed", type=seed, default=0, help="seed for weights, data order and augmentation")
    parser.add_argument("--out", default=None, help="output directory (default runs/MODEL-DATA)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    parser.add_argument("--threads", type=int_in(1, numba.config.NUMBA_NUM_THREADS), default=None,
                        help="threads for the kernels (default: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars, one line per epoch")
    course.add_arguments(parser)


def mine_case(args: argparse.Namespace) -> course.Case:
    """The self-check's step for ``--mine``: this model, a random batch of 16 images of the data's shape."""
    shape = (1, 8, 8) if args.data == "digits" else (3, 32, 32)
    options = {"in_channels": shape[0], **({"shortcut": args.shortcut} if args.shortcut else {})}
    rng = np.random.default_rng(args.seed)
    return course.Case(lambda: CIFAR_MODELS[args.model](num_classes=10, **options),
                       rng.standard_normal((16, *shape)), rng.integers(0, 10, 16),
                       lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def run(args: argparse.Namespace) -> int:
    if (args.mine is not None or args.force) and not course.active():  # check the learner's pieces, then
        return course.run_mine(args, run, lambda: mine_case(args))     # run this inside ``with mine(...)``
    if args.threads is not None:
        set_num_threads(args.threads)
    started = time.perf_counter()
    out = Path(args.out or f"runs/{args.model}-{args.data}")
    if args.resume and not (out / "checkpoint.npz").is_file():
        raise SystemExit(f"--resume: no checkpoint at {out / 'checkpoint.npz'}")
    if args.data == "digits":
        train_data, test_data = load_digits()
    else:
        if args.download:
            args.data_dir = download_cifar10(args.data_dir or "data", args.cifar_url)
        if args.data_dir is None:
            raise SystemExit("--data cifar10 needs --data-dir, the directory with the python-version "
                             "batches, or --download")
        try:
            train_data, test_data = load_cifar10(args.data_dir)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(str(err)) from None
    padding, flip = AUGMENTATION[args.data]
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, nesterov=args.nesterov, schedule=args.schedule,
        milestones=args.milestones, gamma=args.gamma, padding=None if args.no_augment else padding,
        flip=flip, seed=args.seed,
    )
    options = {"in_channels": train_data.image_shape[0]}
    if args.shortcut is not None:
        options["shortcut"] = args.shortcut
    creation.manual_seed(args.seed)
    try:
        model = CIFAR_MODELS[args.model](num_classes=10, **options)
    except TypeError as err:
        raise SystemExit(f"{args.model}: {err}") from None
    print(f"{args.model} on {args.data}: {len(train_data)} training and {len(test_data)} test images "
          f"of shape {train_data.image_shape}; writing to {out}")

    def report(history: list[dict]) -> None:
        h = history[-1]
        if args.no_progress:
            print(f"epoch {h['epoch']:>3}  lr {h['lr']:.4g}  train loss {h['train_loss']:.4f} "
                  f"acc {h['train_acc']:.4f}  test loss {h['test_loss']:.4f} acc {h['test_acc']:.4f}  "
                  f"{h['images_per_s']:.0f} img/s")

    try:
        history = train(model, train_data, test_data, config, out_dir=out, resume=args.resume,
                        label=args.model, on_epoch=report, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {out / 'checkpoint.npz'} holds the last completed epoch; "
              f"continue with the same options and --resume", file=sys.stderr)
        return 130
    if history:
        last = history[-1]
        best = max(h["test_acc"] for h in history)
        print(f"final test accuracy {last['test_acc']:.4f} (best {best:.4f}) after {last['epoch']} epochs; "
              f"{time.perf_counter() - started:.1f} s in this process")
    print(f"wrote {out / 'metrics.csv'}, {out / 'metrics.json'}, {out / 'curves.png'}, "
          f"{out / 'checkpoint.npz'}")
    return 0
