"""The ``tinyres`` command line: one sub-command per module in this package.

Each sub-command module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; adding a command means adding its module to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys

from tinyres.cli import bench, demo, draw, gradcheck_report, summary, train
from tinyres.tuning import tune

COMMANDS = [demo, gradcheck_report, summary, draw, train, bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyres",
        description="Residual networks from scratch: demos, checks, summaries, training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    tune()  # speed settings for this process (tinyres/tuning.py); import tinyres applies none
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
