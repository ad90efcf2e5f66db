"""The op table (``tinyres.testing.op_table.CASES``) drives every check of every op: finite
differences, drawn seeds and layouts, tier agreement, PyTorch. A ``Function`` subclass
that no case reaches fails ``test_every_function_is_in_the_table``."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest
from helpers import compare_with_torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyres
from tinyres import kernels
from tinyres.engine import Function
from tinyres.testing.op_table import CASES, case_inputs, run_case


def tinyres_functions() -> set[type]:
    """Every ``Function`` subclass defined in the tinyres package (all modules imported)."""
    for info in pkgutil.walk_packages(tinyres.__path__, "tinyres."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found, todo = set(), [Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("tinyres."):
                found.add(sub)
    return found


def functions_reached(name: str) -> set[type]:
    case = CASES[name]
    out = case.fn(tinyres, *case_inputs(case))
    # Walked by hand, not with viz's trace, which refuses graphs with in-place steps (clamp_, copy_).
    reached, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn not in reached:
            reached.add(fn)
            todo.extend(t.grad_fn for t in fn.inputs if isinstance(t, tinyres.Tensor))
    return {type(fn) for fn in reached}


# Function subclasses that are no op a user calls, and why they need no case.
NOT_OPS = {
    "tinyres.course._MirrorOp": "the learner's walk's stand-in for an engine node: it runs the node's own "
                                "backward, which has its case; tests/test_course.py checks the walk",
    "tinyres.course._Seed": "the seed of the learner's walk (its backward returns the seed gradient); "
                            "tests/test_course.py compares that walk with the engine's",
}


def test_every_function_is_in_the_table():
    reached = set().union(*(functions_reached(name) for name in CASES))
    missing = sorted(f"{f.__module__}.{f.__qualname__}" for f in tinyres_functions() - reached
                     if f"{f.__module__}.{f.__qualname__}" not in NOT_OPS)
    assert not missing, f"Function subclasses with no case in tinyres/testing/op_table.py: {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_case_passes_gradcheck(name):
    checks = run_case(CASES[name])
    assert all(c.passed for c in checks), checks
    assert max(c.relative_error for c in checks) < 1e-6


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), layout=st.sampled_from(["C", "F"]))
def test_every_case_passes_gradcheck_for_drawn_values_and_layouts(name, seed, layout):
    assert all(c.passed for c in run_case(CASES[name], seed, layout))


def _forward_and_grads(name: str, tier: str, algorithm: str = "auto") -> list[np.ndarray]:
    inputs = case_inputs(CASES[name], seed=1)
    with kernels.use_tier(tier), kernels.use_algorithm(algorithm):
        out = CASES[name].fn(tinyres, *inputs)
    upstream = np.random.default_rng(2).standard_normal(out.shape)
    out.backward(tinyres.tensor(upstream))  # outside the block: backward keeps the forward's tier
    return [out.detach().numpy()] + [t.grad.numpy() for t in inputs if t.requires_grad]


@pytest.mark.parametrize("tier", ["numpy", "numba"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_tier_agrees_with_the_reference(name, tier):
    for got, want in zip(_forward_and_grads(name, tier), _forward_and_grads(name, "reference")):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tier", kernels.TIERS)
@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("conv2d")))
def test_winograd_agrees_with_the_im2col_reference(name, tier):
    """Forced Winograd (where a case is 3x3, stride 1, undilated; im2col elsewhere) at every
    tier against the loop reference of im2col."""
    want = _forward_and_grads(name, "reference", "im2col")
    for got, expected in zip(_forward_and_grads(name, tier, "winograd"), want):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tier", kernels.TIERS)
@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("conv2d")))
def test_direct_agrees_with_the_im2col_reference(name, tier):
    """Forced direct convolution (undilated cases; im2col elsewhere) at every tier against the loop
    reference of im2col. The cases are float64: the reference tier runs direct's blocked loop nest,
    the Numba tier im2col_numba (direct compiles float32 only; tests/test_direct.py checks that)."""
    want = _forward_and_grads(name, "reference", "im2col")
    for got, expected in zip(_forward_and_grads(name, tier, "direct"), want):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.torch))
def test_matches_pytorch(name, dtype):
    arrays = CASES[name].make_inputs(np.random.default_rng(0))
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    compare_with_torch(CASES[name].fn, *arrays)
