"""``tinyres bench NAME [ARGS...]``: run one of the benchmark scripts in ``benchmarks/``.

The benchmarks time PyTorch in separate processes and print Markdown tables, so they
live as scripts beside the package rather than inside it; this command finds them in
the source checkout (``pip install -e .`` keeps them there) and passes the remaining
arguments on, e.g. ``tinyres bench conv --repeats 7`` or ``tinyres bench models --profile``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

NAME = "bench"
HELP = "run a benchmark (conv, batchnorm, models, digits) beside PyTorch CPU when installed"

SCRIPTS = {
    "conv": "bench_conv.py",
    "batchnorm": "bench_batchnorm.py",
    "models": "bench_models.py",
    "digits": "train_digits.py",
}
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(SCRIPTS), help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script (try --help)")


def script_path(name: str, folder: Path = BENCHMARKS) -> Path:
    """The script for ``name``, or a clear error when tinyres runs without its checkout."""
    path = folder / SCRIPTS[name]
    if not path.is_file():
        raise SystemExit(
            f"benchmark script not found at {path}: the benchmarks ship with the source "
            "checkout, so install tinyres from a clone with `pip install -e .`"
        )
    return path


def run(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, str(script_path(args.name)), *args.args])
