"""``tinyres gradcheck``: run every registered op's finite-difference check."""

from __future__ import annotations

import argparse
import time

from tinyres.arguments import seed
from tinyres.testing.op_table import CASES, run_case

NAME = "gradcheck"
HELP = "check every op's backward against central differences (float64) and print a table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ops", nargs="*", help="op names to check (default: all)")
    parser.add_argument("--seed", type=seed, default=0, help="seed for the inputs and upstream gradient")


def run(args: argparse.Namespace) -> int:
    names = args.ops or sorted(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown op(s) {unknown}; known: {', '.join(sorted(CASES))}")
    width = max(len(n) for n in names) + 2
    print(f"{'op':<{width}}{'inputs':>7}{'max relative error':>20}  result")
    failures = 0
    worst = 0.0
    start = time.perf_counter()
    for name in names:
        checks = run_case(CASES[name], args.seed)
        error = max(c.relative_error for c in checks)
        ok = all(c.passed for c in checks)
        worst = max(worst, error)
        failures += not ok
        print(f"{name:<{width}}{len(checks):>7}{error:>20.2e}  {'pass' if ok else 'FAIL'}")
    elapsed = time.perf_counter() - start
    print(
        f"{len(names) - failures}/{len(names)} ops pass; largest relative error {worst:.2e} "
        f"({elapsed:.1f} s)"
    )
    return 1 if failures else 0
