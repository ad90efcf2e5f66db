"""Every op declares exactly what its backward reads (``saved_inputs`` / ``saves_output``).

A thin driver: ``tinyres.testing.check_saved_tensors`` over every case of the op table,
with ``over_declared=True``. For every tensor of the case's graph (the inputs, each
intermediate result and the output) it changes that tensor after forward, and requires
PyTorch's RuntimeError exactly where the change would have altered the gradient: a
missing declaration gives a silently wrong gradient, an extra one raises where PyTorch's
rule (save only what backward reads) would not.

No torch needed. The reference tier runs, because its backward reads what the math
reads; a faster tier may keep a copy (a channels-last x) and read that instead.
"""

from __future__ import annotations

from unittest import mock

import pytest

import tinyres
from tinyres import kernels
from tinyres.testing import OpCheckError, check_saved_tensors
from tinyres.testing.op_table import CASES, case_inputs


def check_case(name: str) -> None:
    case = CASES[name]
    with kernels.use_tier("reference"):
        check_saved_tensors(lambda *xs: case.fn(tinyres, *xs), *case_inputs(case), over_declared=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_declare_exactly_what_backward_reads(name):
    check_case(name)


def test_the_property_catches_a_missing_declaration():
    """Planted: Log without its declaration gives a silently wrong gradient, and the check says so."""
    from tinyres.ops.elementwise import Log

    with mock.patch.object(Log, "saved_inputs", ()), pytest.raises(OpCheckError, match="silently wrong"):
        check_case("log")


def test_the_property_catches_an_over_declaration():
    """Planted: Neg declaring its input, which its backward never reads, is refused."""
    from tinyres.ops.elementwise import Neg

    with mock.patch.object(Neg, "saved_inputs", ((0,),)), pytest.raises(OpCheckError, match="over-declared"):
        check_case("neg")
