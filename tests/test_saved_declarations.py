"""Every op declares exactly what its backward reads (``saved_inputs`` / ``saves_output``).

For every case of the op table and every tensor in its graph (the inputs, each
intermediate result and the output): run forward, change that tensor in place, run
backward, and compare with the gradient of an untouched run. Where the change made
backward compute a different gradient, PyTorch's RuntimeError is required (else the
op forgot a declaration and gives a silently wrong gradient); where the op raises but
the gradient would not have changed, the op declared more than its backward reads
(PyTorch's rule: only what backward reads). Whether the gradient would have changed is
found by running the same backward with the version check switched off.

No torch needed. The reference tier runs, because its backward reads what the math
reads; a faster tier may keep a copy (a channels-last x) and read that instead.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

import tinyres
from tinyres import kernels
from tinyres.engine import SavedVersion, Tensor
from tinyres.testing.op_table import CASES, case_inputs

MESSAGE = "modified by an inplace operation"


def graph_tensors(out: Tensor, inputs: tuple[Tensor, ...]) -> list[Tensor]:
    """The output, the case's inputs and every tensor an op of the graph consumed, each once,
    in an order that is the same for every run of the case (the graph is built the same way)."""
    found: dict[int, Tensor] = {}
    for t in (out, *inputs):
        found.setdefault(id(t), t)
    todo, seen = [out.grad_fn], set()
    while todo:
        fn = todo.pop(0)
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        for t in fn.inputs:
            if isinstance(t, Tensor):
                found.setdefault(id(t), t)
                todo.append(t.grad_fn)
    # A read-only array (a broadcast view) cannot be written, in tinyres as in NumPy.
    return [t for t in found.values()
            if t._data.flags.writeable and (t.dtype.kind == "f" or any(t is i for i in inputs))]


def perturb(t: Tensor) -> None:
    """Change ``t`` in place outside the graph (as an optimizer step would): a float tensor
    becomes -1.5 t + 0.25, which flips signs, ties and orders; labels are rolled."""
    new = -1.5 * t._data + 0.25 if t.dtype.kind == "f" else np.roll(t._data, 1)
    with tinyres.no_grad():
        t.copy_(new)


def run(name: str, target: int | None, check: bool) -> list[np.ndarray | None]:
    """The inputs' gradients after forward, a change of graph tensor ``target`` (None: no
    change) and backward with a fixed upstream gradient; the version check on or off."""
    case = CASES[name]
    inputs = case_inputs(case)
    out = case.fn(tinyres, *inputs)
    upstream = np.random.default_rng(7).standard_normal(out.shape).astype(out.dtype)
    if target is not None:
        perturb(graph_tensors(out, inputs)[target])
    if check:
        out.backward(upstream)
    else:
        with mock.patch.object(SavedVersion, "check", lambda self: None):
            out.backward(upstream)
    return [None if t.grad is None else t.grad._data.copy() for t in inputs]


def same(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> bool:
    return all((x is None) == (y is None) and (x is None or np.array_equal(x, y, equal_nan=True))
               for x, y in zip(a, b))


def targets(name: str) -> list[tuple[int, str]]:
    case = CASES[name]
    inputs = case_inputs(case)
    out = case.fn(tinyres, *inputs)
    return [(i, t.grad_fn.__class__.__name__ if t.grad_fn is not None else "leaf")
            for i, t in enumerate(graph_tensors(out, inputs))]


def declaration_verdict(name: str) -> list[str]:
    """What is wrong with the declarations the case's graph uses: one line per tensor."""
    problems = []
    # The changed values may be outside an op's domain (a negative base of pow): on purpose.
    with kernels.use_tier("reference"), np.errstate(all="ignore"):
        untouched = run(name, None, check=True)
        for index, made_by in targets(name):
            try:
                silent = run(name, index, check=False)
            except RuntimeError as error:
                # The output is a view of the changed tensor: tinyres refuses any backward
                # from a stale view (a documented difference from PyTorch), declarations aside.
                if "was taken before its base was modified" in str(error):
                    continue
                raise
            changed = not same(silent, untouched)
            try:
                run(name, index, check=True)
                raised = False
            except RuntimeError as error:
                if MESSAGE not in str(error):
                    raise
                raised = True
            what = f"{name}: graph tensor {index} (made by {made_by}) changed in place"
            if changed and not raised:
                problems.append(f"{what}: the gradient silently changed (a declaration is missing)")
            if raised and not changed:
                problems.append(f"{what}: raised, yet backward does not read it (over-declared)")
    return problems


@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_declare_exactly_what_backward_reads(name):
    problems = declaration_verdict(name)
    assert not problems, "\n".join(problems)


def test_the_property_catches_a_missing_declaration():
    """Planted: Log without its declaration gives a silently wrong gradient, and the check says so."""
    from tinyres.ops.elementwise import Log

    with mock.patch.object(Log, "saved_inputs", ()):
        problems = declaration_verdict("log")
    assert any("declaration is missing" in p for p in problems), problems


def test_the_property_catches_an_over_declaration():
    """Planted: Neg declaring its input, which its backward never reads, is refused."""
    from tinyres.ops.elementwise import Neg

    with mock.patch.object(Neg, "saved_inputs", ((0,),)):
        problems = declaration_verdict("neg")
    assert any("over-declared" in p for p in problems), problems
