"""``tinyres demo NAME``: the gradient-flow demos of ``tinyres.demos``, one sub-command each.

Each demo module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``, like
the top-level commands; every demo writes a table, a JSON file and a PNG to ``--out``.
"""

from __future__ import annotations

import argparse

import numpy as np

from tinyres import course
from tinyres.arguments import add_debug_option
from tinyres.demos import degradation, jacobian, lesion, vanishing
from tinyres.demos.nets import make_net

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
    return int(args.demo_run(args) or 0)
