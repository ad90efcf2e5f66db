"""The command line's argument types, checked while parsing, and its two kinds of error.

Used by ``tinyres.cli`` and by the demos' ``add_arguments`` (a leaf module, so both can import it).

A value out of range is a mistake in what the user typed, so it is refused by
``argparse`` before anything runs (exit code 2, one line) instead of failing later
inside NumPy or Numba with a traceback. Each type below is a callable for
``add_argument(type=...)``:

>>> positive_int("3"), non_negative_float("0.1")
(3, 0.1)
>>> positive_int("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected an integer >= 1, got '0'
>>> non_negative_float("nan")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected a finite number >= 0, got 'nan'

``UsageError`` is for a check that involves several arguments (and so can only run
once all are parsed): the command line turns it into the same exit code 2 as a
parse error. Anything else that goes wrong while a command runs is a failure, exit 1.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

SEED_LIMIT = 2**64 - 1  # NumPy's generators take any non-negative int; PyTorch's manual_seed this range


class UsageError(Exception):
    """Arguments that parse one by one but do not make sense together (exit code 2)."""


def int_in(low: int, high: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type: an int with ``low <= value <= high``."""
    expected = f"{what} >= {low}" if high is None else f"{what} in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def float_in(low: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float ``>= low`` (``> low`` with ``above=True``)."""
    expected = f"a finite number {'>' if above else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def checked_int(check: Callable[[int], object]) -> Callable[[str], int]:
    """An argparse type: an int that ``check`` accepts (its ``ValueError`` is the message).

    >>> even = checked_int(lambda n: n % 2 == 0 or (_ for _ in ()).throw(ValueError("odd")))
    >>> even("4")
    4
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
            check(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    return parse


positive_int = int_in(1)
non_negative_float = float_in(0.0)
positive_float = float_in(0.0, above=True)
seed = int_in(0, SEED_LIMIT, "a seed")


class Parser(argparse.ArgumentParser):
    """``argparse`` with a one-line error: ``tinyres train: error: ...`` and exit code 2.

    The default prints the whole usage block first, which buries the one line that
    says what was wrong; ``--help`` still shows the usage.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_debug_option(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug`` on the top parser and on each command's (SUPPRESS: a command's parser
    must not reset a ``tinyres --debug COMMAND`` given before its name)."""
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show the Python traceback of an error")
