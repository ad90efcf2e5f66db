"""``tinyres demo NAME``: the gradient-flow demos of ``tinyres.demos``, one sub-command each.

Each demo module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``, like
the top-level commands; every demo writes a table, a JSON file and a PNG to ``--out``.
"""

from __future__ import annotations

import argparse

import numpy as np

from tinyres import course, distributed
from tinyres.arguments import add_debug_option
from tinyres.demos import degradation, jacobian, lesion, vanishing
from tinyres.demos.nets import make_net
from tinyres.demos.report import out_dir
from tinyres.parallel_training import independent_jobs, my_share

NAME = "demo"
HELP = "gradient-flow demos: vanishing, jacobian, degradation, lesion"

DEMOS = [vanishing, jacobian, degradation, lesion]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="demo", metavar="DEMO", required=True)
    for demo in DEMOS:
        p = sub.add_parser(demo.NAME, help=demo.HELP, description=demo.HELP)
        add_debug_option(p)
        demo.add_arguments(p)
        course.add_arguments(p)
        p.set_defaults(demo_run=demo.run)


def mine_case(args: argparse.Namespace) -> course.Case:
    """The self-check's step for ``--mine``: the 8-layer residual net of the demo's setting, batch 8."""
    options = {k: getattr(args, k) for k in ("activation", "init", "norm") if hasattr(args, k)}
    x, y = vanishing.data_batch(8, getattr(args, "seed", 0), np.float64)
    return course.Case(lambda: make_net(8, True, width=vanishing.WIDTH, **options), x.numpy(), y.numpy())


def run(args: argparse.Namespace) -> int:
    if (args.mine is not None or args.force) and not course.active():  # check the learner's pieces, then
        return course.run_mine(args, run, lambda: mine_case(args))  # run inside ``with mine(...)``
    if distributed.launched_world_size() > 1 and args.demo in (degradation.NAME, lesion.NAME):
        return run_spread(args)
    return int(args.demo_run(args) or 0)


def run_spread(args: argparse.Namespace) -> int:
    """Under ``mpiexec -n N``: the nets the demo trains are spread over the ranks (rank r trains
    runs r, r+N, ..., each as it would be trained alone, into the demo's cache); then rank 0
    makes the report, every net now loaded from the cache, so the output is the one a single
    process running the nets one after another writes."""
    from tinyres.cli.train import join_ranks, or_abort

    join_ranks(args)
    config = degradation.recipe(args.quick, args.epochs, args.seed, args.batch, args.lr)
    depths = degradation.depths_of(args)
    if args.demo == lesion.NAME:  # lesion reuses degradation's deeper pair from its cache
        runs_dir = out_dir(args.runs)
        runs = [r for r in degradation.runs_for(depths) if r.depth == depths[1]]
    else:
        runs_dir = out_dir(args.out) / "runs"
        runs = degradation.runs_for(depths)

    def share(_: argparse.Namespace) -> int:
        train_data, test_data, data = degradation.digits(args.quick)
        with independent_jobs():
            for run_ in my_share(runs):
                degradation.train_or_load(run_, config, train_data, test_data, data, runs_dir, progress=False)
        distributed.barrier()
        return 0

    or_abort(share, args)
    if distributed.get_rank() != 0:
        return 0
    with independent_jobs():
        return or_abort(lambda a: int(a.demo_run(a) or 0), args)
