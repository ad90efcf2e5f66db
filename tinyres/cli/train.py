"""``tinyres train --model resnet20 --data digits``: train a CIFAR-style network.

Writes into ``--out`` (default ``runs/MODEL-DATA``): ``checkpoint.npz`` after every
epoch, ``metrics.csv``, ``metrics.json`` and ``curves.png``. ``--resume`` continues
from the checkpoint there and ends with the same weights and metrics as a run that
was never stopped; Ctrl-C or SIGTERM, in any phase, keeps the last end-of-epoch
checkpoint and says so in one line (exit 130 or 143).

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
import json
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from tinyres import course, creation, distributed, phases
from tinyres.arguments import int_in, non_negative_float, positive_float, positive_int, seed
from tinyres.data import download_cifar10, load_cifar10, load_digits
from tinyres.data.cifar10 import URL as CIFAR_URL
from tinyres.distributed.run import checkpoint_note
from tinyres.kernels.threads import set_num_threads
from tinyres.models import MODELS
from tinyres.parallel_training import independent_jobs, is_writer, my_share
from tinyres.serialization import write_atomically
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


def parse_sweep(text: str) -> tuple[str, tuple[int, ...]]:
    key, _, values = text.partition("=")
    if key not in ("depths", "seeds"):
        raise argparse.ArgumentTypeError(f"--sweep takes depths=D1,D2 and seeds=S1,S2, got {text!r}")
    try:
        numbers = tuple(int(v) for v in values.split(",") if v)
    except ValueError:
        numbers = ()
    if not numbers or any(n < 0 for n in numbers):
        raise argparse.ArgumentTypeError(f"--sweep {key}= takes comma-separated non-negative integers, "
                                         f"got {text!r}")
    return key, numbers


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
    parser.add_argument("--sweep", nargs="+", type=parse_sweep, default=None, metavar="KEY=V1,V2",
                        help="train one run per combination of depths=... and seeds=... (of --model's "
                             "family), e.g. --sweep depths=20,32 seeds=0,1; under mpiexec -n N the runs are "
                             "spread over the ranks, each run as it would be alone; into OUT/MODEL-seedS")
    parser.add_argument("--no-sync-bn", action="store_true",
                        help="under mpiexec -n N: batch norm over each rank's shard, not the global batch "
                             "(the numbers then depend on N)")

    course.add_arguments(parser)


def output_dir(args: argparse.Namespace) -> Path:
    return Path(args.out or f"runs/{args.model}-{args.data}")


def interrupted(args: argparse.Namespace) -> str:
    """What the line after Ctrl-C or SIGTERM adds (``cli.main`` prints it): under mpiexec which
    rank, then where to resume from (checkpoints are written atomically, so the file holds the
    last completed epoch whatever phase the signal stopped)."""
    rank = f" on {distributed.where()}" if distributed.is_initialized() else ""
    return rank + checkpoint_note(output_dir(args) / "checkpoint.npz")


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
    if args.sweep:
        return run_sweep(args)
    if distributed.launched_world_size() > 1 and not distributed.is_initialized():
        return run_rank(args)  # under mpiexec -n N: this process is one rank of N
    if args.threads is not None:
        set_num_threads(args.threads)
    started = time.perf_counter()
    out = output_dir(args)
    if args.resume and not (out / "checkpoint.npz").is_file():
        raise SystemExit(f"--resume: no checkpoint at {out / 'checkpoint.npz'}")
    phases.reached("data")
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
    say = print if is_writer() else (lambda *a, **k: None)  # under mpiexec rank 0 alone speaks
    say(f"{args.model} on {args.data}: {len(train_data)} training and {len(test_data)} test images "
          f"of shape {train_data.image_shape}; writing to {out}")

    def report(history: list[dict]) -> None:
        h = history[-1]
        if args.no_progress:
            say(f"epoch {h['epoch']:>3}  lr {h['lr']:.4g}  train loss {h['train_loss']:.4f} "
                  f"acc {h['train_acc']:.4f}  test loss {h['test_loss']:.4f} acc {h['test_acc']:.4f}  "
                  f"{h['images_per_s']:.0f} img/s")

    try:
        history = train(model, train_data, test_data, config, out_dir=out, resume=args.resume,
                        label=args.model, on_epoch=report, progress=not args.no_progress,
                        sync_bn=not args.no_sync_bn)
    except FloatingPointError as err:  # the run diverged: fit stopped it before saving NaN weights
        raise FloatingPointError(f"{err}; lower --lr (it was {args.lr:g})") from None
    if history:
        last = history[-1]
        best = max(h["test_acc"] for h in history)
        say(f"final test accuracy {last['test_acc']:.4f} (best {best:.4f}) after {last['epoch']} epochs; "
              f"{time.perf_counter() - started:.1f} s in this process")
    say(f"wrote {out / 'metrics.csv'}, {out / 'metrics.json'}, {out / 'curves.png'}, "
          f"{out / 'checkpoint.npz'}")
    return 0


def join_ranks(args: argparse.Namespace) -> None:
    """Under ``mpiexec -n N``: join the other ranks, one kernel thread each (they share the cores)."""
    try:
        distributed.init_process_group("mpi")
    except RuntimeError as err:
        raise SystemExit(f"mpiexec started {distributed.launched_world_size()} ranks, but {err}") from None
    if getattr(args, "threads", None) is None:  # `tinyres demo` has no --threads
        args.threads = 1
        set_num_threads(1)


def run_rank(args: argparse.Namespace) -> int:
    """One rank of ``mpiexec -n N tinyres train ...``: join the others and train."""
    join_ranks(args)
    if distributed.get_rank() == 0:  # for the launcher's line if a rank is killed without a word
        distributed.announce("checkpoint", str(output_dir(args) / "checkpoint.npz"))
    return or_abort(run, args)


def or_abort(work: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``work(args)``; on a failure of this rank, end every rank at once with one line naming
    this rank and why (the others may be waiting for it in an all-reduce)."""
    command = getattr(args, "command", None) or NAME  # `tinyres demo` spreads its runs this way too
    try:
        return work(args)
    except SystemExit as stop:
        if stop.code in (0, None):
            raise
        distributed.abort(f"tinyres {command}: {distributed.where()} failed: {stop.code}")
    except Exception as err:
        from tinyres.cli import one_line

        distributed.abort(f"tinyres {command}: {distributed.where()} failed: {one_line(err)}")
    return 1


def run_sweep(args: argparse.Namespace) -> int:
    """``--sweep depths=... seeds=...``: one independent run per (depth, seed), spread over the
    ranks under mpiexec (rank r takes runs r, r+N, ...); then rank 0 writes OUT/sweep.json with
    every run's last epoch. Each run is the run ``--model FAMILYDEPTH --seed S`` would make."""
    sweep = dict(args.sweep)
    family = args.model.rstrip("0123456789")
    depths = sweep.get("depths", (int(args.model[len(family):]),))
    seeds = sweep.get("seeds", (args.seed,))
    unknown = [f"{family}{d}" for d in depths if f"{family}{d}" not in CIFAR_MODELS]
    if unknown:
        known = sorted(int(m[len(family):]) for m in CIFAR_MODELS if m.rstrip("0123456789") == family)
        raise SystemExit(f"--sweep depths: {', '.join(unknown)} is not a model; {family} has depths {known}")
    base = Path(args.out or f"runs/sweep-{family}-{args.data}")
    jobs = [(depth, seed) for depth in depths for seed in seeds]
    if distributed.launched_world_size() > 1:
        join_ranks(args)

    def one(job: tuple[int, int]) -> int:
        depth, seed = job
        single = argparse.Namespace(**{**vars(args), "sweep": None, "model": f"{family}{depth}", "seed": seed,
                                       "out": str(base / f"{family}{depth}-seed{seed}")})
        single.no_progress = single.no_progress or distributed.is_initialized()  # one bar per terminal
        with independent_jobs():
            return run(single)

    def share(_: argparse.Namespace) -> int:
        for job in my_share(jobs):
            one(job)
        if distributed.is_initialized():
            distributed.barrier()
        return 0

    or_abort(share, args) if distributed.is_initialized() else share(args)
    if not is_writer():
        return 0
    names = [f"{family}{d}-seed{s}" for d, s in jobs]
    summary = {name: json.loads((base / name / "metrics.json").read_text())[-1] for name in names}
    write_atomically(base / "sweep.json", lambda f: f.write((json.dumps(summary, indent=1) + "\n").encode()))
    for name, last in summary.items():
        print(f"{name:>22}: train loss {last['train_loss']:.4f}  test acc {last['test_acc']:.4f}")
    print(f"wrote {base / 'sweep.json'}")
    return 0
