"""``tinyres demo NAME``: the gradient-flow demos of ``tinyres.demos``, one sub-command each.

Each demo module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``, like
the top-level commands; every demo writes a table, a JSON file and a PNG to ``--out``.
"""

from __future__ import annotations

import argparse

from tinyres.arguments import add_debug_option
from tinyres.demos import degradation, jacobian, lesion, vanishing

NAME = "demo"
HELP = "gradient-flow demos: vanishing, jacobian, degradation, lesion"

DEMOS = [vanishing, jacobian, degradation, lesion]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="demo", metavar="DEMO", required=True)
    for demo in DEMOS:
        p = sub.add_parser(demo.NAME, help=demo.HELP, description=demo.HELP)
        add_debug_option(p)
        demo.add_arguments(p)
        p.set_defaults(demo_run=demo.run)


def run(args: argparse.Namespace) -> int:
    return int(args.demo_run(args) or 0)
