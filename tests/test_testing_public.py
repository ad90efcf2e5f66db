"""``tinyres.testing``, the public test helpers: ``assert_close`` against torch's, the
strategies, each property of ``check_op`` failing on a planted mistake, and the README's
"Test your own op in five lines" run as a user runs it (pytest in a fresh process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyres as tr
import tinyres.nn.functional as F
from tinyres.testing import OpCheckError, assert_close, check_op, check_saved_tensors
from tinyres.testing.op_table import CASES, case_inputs
from tinyres.testing.strategies import LAYOUTS, broadcastable_pairs, conv2d_args, tensors

ROOT = Path(__file__).resolve().parent.parent

# ---- assert_close: torch.testing.assert_close's verdicts and message -------------------------

# (dtype, relative change): float32's default rtol is 1.3e-6 and atol 1e-5, float64's 1e-7 both;
# the changes sit a factor of ten or more from the thresholds.
VERDICT_CASES = [(np.float32, 1e-7), (np.float32, 1e-4), (np.float64, 1e-9), (np.float64, 1e-5)]


@pytest.mark.torch
@pytest.mark.parametrize(("dtype", "change"), VERDICT_CASES)
def test_assert_close_passes_and_fails_where_torch_does(dtype, change):
    torch = pytest.importorskip("torch")
    expected = np.array([[1.0, -3.0], [20.0, 0.5]], dtype=dtype)
    actual = expected.copy()
    actual[1, 0] *= 1 + change
    verdicts = []
    for check, lib in ((assert_close, tr), (torch.testing.assert_close, torch)):
        try:
            check(lib.tensor(actual), lib.tensor(expected))
            verdicts.append("close")
        except AssertionError as error:
            verdicts.append(str(error).splitlines()[:3])
    assert verdicts[0] == verdicts[1]


@pytest.mark.torch
def test_assert_close_message_has_torchs_lines_and_the_worst_values():
    torch = pytest.importorskip("torch")
    actual, expected = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.5, 3.0, 4.1])
    with pytest.raises(AssertionError) as ours:
        assert_close(tr.tensor(actual), tr.tensor(expected))
    with pytest.raises(AssertionError) as theirs:
        torch.testing.assert_close(torch.tensor(actual), torch.tensor(expected))
    ours_lines, theirs_lines = str(ours.value).splitlines(), str(theirs.value).splitlines()
    assert ours_lines[:4] == theirs_lines[:4]  # headline, mismatch count, worst absolute difference
    assert re.sub(r"difference: \S+", "", ours_lines[4]) == re.sub(r"difference: \S+", "", theirs_lines[4])
    assert ours_lines[-1] == "At index (1,): expected 2.5, got 2"


def test_assert_close_refuses_other_shapes_dtypes_and_half_given_tolerances():
    with pytest.raises(AssertionError, match=r"attribute 'shape' do not match: \(3,\) != \(2,\)"):
        assert_close(tr.ones(3), tr.ones(2))
    with pytest.raises(AssertionError, match=r"'dtype' do not match: tinyres\.float32 != tinyres\.float64"):
        assert_close(tr.ones(2), tr.ones(2, dtype=tr.float64))
    assert_close(tr.ones(2), tr.ones(2, dtype=tr.float64), check_dtype=False)
    with pytest.raises(ValueError, match="but got no atol"):
        assert_close(tr.ones(2), tr.ones(2), rtol=1e-3)
    with pytest.raises(AssertionError, match="not equal"):
        assert_close(np.array([1, 2]), np.array([1, 3]))
    with pytest.raises(AssertionError, match="nan at index"):
        assert_close(np.array([1.0, np.nan]), np.array([1.0, np.nan]))
    assert_close(np.array([1.0, np.nan]), np.array([1.0, np.nan]), equal_nan=True)


# ---- the strategies -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(x=tensors(dtype=st.sampled_from([np.float32, np.float64]), kinks=(0.0, 1.0), margin=0.1))
def test_tensors_keep_the_dtype_range_and_distance_from_kinks(x):
    a = x.detach().numpy()
    assert x.requires_grad and a.dtype in (np.float32, np.float64)
    assert np.all(np.abs(a) >= 0.1 - 1e-6) and np.all(np.abs(a - 1.0) >= 0.1 - 1e-6)
    assert np.all(np.abs(a) <= 2.1)


def test_tensors_draw_every_layout_and_the_tensor_keeps_its_strides():
    seen = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(x=tensors(shape=(3, 4)))
    def draw(x):
        a = x.detach().numpy()
        seen.add("c" if a.flags.c_contiguous else "transposed" if a.flags.f_contiguous else "strided")

    draw()
    assert seen == set(LAYOUTS)


@settings(max_examples=30, deadline=None)
@given(pair=broadcastable_pairs())
def test_broadcastable_pairs_broadcast(pair):
    np.broadcast_shapes(*pair)


@settings(max_examples=30, deadline=None)
@given(args=conv2d_args())
def test_conv2d_args_give_a_valid_convolution_of_the_expected_shape(args):
    x, w = args["input"], args["weight"]
    out = F.conv2d(**args)
    sides = [
        (x.shape[2 + i] + 2 * args["padding"][i] - args["dilation"][i] * (w.shape[2 + i] - 1) - 1)
        // args["stride"][i] + 1
        for i in range(2)
    ]
    assert out.shape == (x.shape[0], w.shape[0], *sides) and min(sides) >= 1


# ---- check_op: each property fails on its planted mistake ---------------------------------------


class Square(tr.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class HalfSquare(Square):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x * grad


class UnsavedSquare(Square):
    """Keeps x on ctx instead of saving it: an in-place change gives a silently wrong gradient."""

    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return x * x

    @staticmethod
    def backward(ctx, grad):
        return 2 * ctx.x * grad


class ChangesItsInput(Square):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        x.data.mul_(1.0)  # harmless
        x.data[...] = x.data * 1.0001  # not harmless
        return x * x


class Float64Out(Square):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * x).double()


class Coarse32(Square):
    """Right in float64; in float32 the output is rounded to a multiple of 0.1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        y = x * x
        return tr.tensor(np.round(y.numpy() * 10) / 10) if y.dtype == tr.float32 else y


class OverSavedDouble(tr.autograd.Function):
    """Saves x and unpacks it in backward, though 2 * grad never reads it: over-declared."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        (_x,) = ctx.saved_tensors
        return 2 * grad


def square_input(dtype=tr.float64):
    return tr.tensor([[0.3, -1.2, 2.0], [0.7, 1.5, -0.4]], dtype=dtype, requires_grad=True)


def test_check_op_passes_a_right_op_and_leaves_the_callers_tensors_alone():
    x = square_input(tr.float32)
    check_op(Square.apply, x)
    assert x.grad is None and x.grad_fn is None
    check_op(lambda t, s: (t * s).tanh(), square_input(), 3.0)


@pytest.mark.parametrize(
    ("op", "dtype", "message"),
    [
        (HalfSquare, tr.float64, r"gradient of input 0 against central differences .* at index \(0, 1\)"),
        (UnsavedSquare, tr.float64, "saved tensors: backward reads input 0"),
        (ChangesItsInput, tr.float64, r"inputs unchanged: forward changed input 0 at index \(0, 0\)"),
        (Float64Out, tr.float32, "dtype: the inputs are float32, the output is float64"),
        (Coarse32, tr.float32, "float32: the output is .* from its float64 truth"),
    ],
)
def test_check_op_fails_each_planted_mistake_with_its_property(op, dtype, message):
    with pytest.raises(OpCheckError, match=message):
        check_op(op.apply, square_input(dtype))


def test_saving_more_than_backward_reads_fails_only_when_asked():
    # Allowed by default (PyTorch's own max-pool saves its input and reads only indices);
    # over_declared=True holds an op to PyTorch's rule for its own ops, as the op table does.
    check_op(OverSavedDouble.apply, square_input())
    check_op(Square.apply, square_input(), over_declared=True)
    with pytest.raises(OpCheckError, match=r"changing input 0 in place raised .* over-declared"):
        check_op(OverSavedDouble.apply, square_input(), over_declared=True)


def test_check_op_refuses_a_call_with_nothing_to_differentiate():
    with pytest.raises(ValueError, match="no input is a Tensor that requires grad"):
        check_op(Square.apply, tr.ones(2, dtype=tr.float64))


@pytest.mark.parametrize("name", ["pow", "matmul", "log_softmax", "conv2d", "sqrt"])
def test_a_missing_declaration_on_a_builtin_op_is_caught(name, monkeypatch):
    # The op table's case passes; the same op with its saved_inputs/saves_output removed fails.
    case = CASES[name]
    fn = lambda *xs: case.fn(tr, *xs)  # noqa: E731
    check_saved_tensors(fn, *case_inputs(case))
    out = fn(*case_inputs(case))
    monkeypatch.setattr(type(out.grad_fn), "saved_inputs", ())
    monkeypatch.setattr(type(out.grad_fn), "saves_output", False)
    with pytest.raises(OpCheckError, match="saved tensors: backward reads"):
        check_saved_tensors(fn, *case_inputs(case))


def test_inside_given_hypothesis_reports_the_shrunk_tensor():
    @settings(max_examples=50, deadline=None, database=None)
    @given(x=tensors())
    def test_half_square(x):
        check_op(HalfSquare.apply, x)

    with pytest.raises(OpCheckError) as error:
        test_half_square()
    notes = "\n".join(getattr(error.value, "__notes__", []))
    # Shrunk to one element (shape, seed 0 and C layout are hypothesis's smallest draws).
    assert "x=tensor([0.54784675], shape=(1,), dtype=float64, requires_grad=True)" in notes, notes


# ---- the README's section, as a user runs it ----------------------------------------------------


def readme_section_code() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Test your own op in five lines", 1)[1].split("\n## ", 1)[0]
    return "\n\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))


def test_the_readme_example_passes_a_right_backward_and_shrinks_a_wrong_one(tmp_path):
    (tmp_path / "test_cube.py").write_text(readme_section_code())
    # Only fewer examples than hypothesis's default 100, for CI's time (the file is the README's).
    (tmp_path / "conftest.py").write_text(
        "from hypothesis import settings\n"
        "settings.register_profile('short', max_examples=25)\n"
        "settings.load_profile('short')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYPOTHESIS_PROFILE", None)  # the user's defaults, not the suite's profile
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_cube.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert re.search(r"FAILED test_cube.py::test_wrong_cube\b", out), out
    assert "1 failed, 2 passed" in out, out
    # The counterexample the README shows, shrunk to one element.
    readme = readme_section_code()
    shown = re.search(r"fails: \"Falsifying example: test_wrong_cube\(x=(tensor\(\[[^\]]*\])", readme)
    assert shown and f"x={shown.group(1)}" in out, out
