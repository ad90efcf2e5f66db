"""Property tests over drawn shapes: engine ops pass gradcheck, binary ops over broadcastable
pairs; gradcheck itself. Every op's table-driven checks are in test_op_table.py."""

import re

import numpy as np
import pytest
from helpers import arrays, away_from, broadcastable_pairs, compare_with_torch, leaf, shapes
from hypothesis import given
from hypothesis import strategies as st

import tinyres as tr
from tinyres.engine import Function

BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "pow": lambda x, y: x**y,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(pair=broadcastable_pairs(), data=st.data())
def test_binary_ops_gradcheck_with_broadcasting(name, pair, data):
    x = data.draw(arrays(pair[0]))
    y = data.draw(arrays(pair[1]))
    if name in ("div", "pow"):
        y = np.abs(y) + 0.5 if name == "div" else y
        x = np.abs(x) + 0.5 if name == "pow" else x
    assert tr.gradcheck(BINARY[name], (leaf(x), leaf(y)))


UNARY = {
    "neg": (lambda x: -x, "any"),
    "exp": (lambda x: x.exp(), "any"),
    "log": (lambda x: x.log(), "positive"),
    "sqrt": (lambda x: x.sqrt(), "positive"),
    "abs": (lambda x: x.abs(), "off_kink"),
    "relu": (lambda x: x.relu(), "off_kink"),
    "sigmoid": (lambda x: x.sigmoid(), "any"),
    "tanh": (lambda x: x.tanh(), "any"),
    "sum_all": (lambda x: x.sum(), "any"),
    "mean_last": (lambda x: x.mean(dim=-1), "any"),
    "sum_keepdim": (lambda x: x.sum(dim=0, keepdim=True), "any"),
    "max_all": (lambda x: x.max(), "distinct"),
    "max_dim": (lambda x: x.max(dim=0)[0], "distinct"),
    "flatten": (lambda x: x.flatten(), "any"),
    "reshape": (lambda x: x.reshape(-1, 1), "any"),
    "transpose": (lambda x: x.transpose(0, -1), "any"),
    "T": (lambda x: x.T, "any"),
    "index": (lambda x: x[..., :1], "any"),
    "double_use": (lambda x: x * x + x, "any"),
    "clone": (lambda x: x.clone(), "any"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes(1, 3), data=st.data())
def test_unary_ops_gradcheck(name, shape, data):
    fn, domain = UNARY[name]
    x = data.draw(arrays(shape))
    if domain == "positive":
        x = np.abs(x) + 0.5
    elif domain == "off_kink":
        x = away_from(x, 0.0, 0.05)
    elif domain == "distinct":
        # Spread values apart so max has no ties within the eps of the difference.
        x = x + np.arange(x.size).reshape(x.shape) * 0.1
    assert tr.gradcheck(fn, (leaf(x),))


@given(
    m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4),
    batch=st.sampled_from([(), (2,), (3, 1)]), data=st.data(),
)
def test_matmul_gradcheck(m, k, n, batch, data):
    x = data.draw(arrays(batch + (m, k)))
    y = data.draw(arrays((k, n)))
    assert tr.gradcheck(lambda a, b: a @ b, (leaf(x), leaf(y)))


@given(shapes_=st.lists(st.integers(1, 3), min_size=1, max_size=3), data=st.data())
def test_cat_and_stack_gradcheck(shapes_, data):
    parts = [leaf(data.draw(arrays((2, c)))) for c in shapes_]
    assert tr.gradcheck(lambda *xs: tr.cat(list(xs), dim=1), parts)
    same = [leaf(data.draw(arrays((2, 3)))) for _ in shapes_]
    assert tr.gradcheck(lambda *xs: tr.stack(list(xs), dim=0), same)


@given(shape=shapes(2, 3), data=st.data())
def test_non_contiguous_inputs_give_the_same_result_as_contiguous(shape, data):
    x = data.draw(arrays(shape, layout="transposed"))
    assert not x.flags.c_contiguous or x.size <= 1 or 1 in shape
    a, b = leaf(x), leaf(np.ascontiguousarray(x))
    for t in (a, b):
        ((t * t).sigmoid() @ tr.ones(shape[-1], 2, dtype=tr.float64)).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    ("start", "convert"),
    [(np.float32, lambda t: t.double()), (np.float64, lambda t: t.float()),
     (np.float32, lambda t: t.to(tr.float64)), (np.float32, lambda t: t.clone())],
)
def test_cast_and_clone_pass_a_random_upstream_gradient_back_unchanged(start, convert):
    # dz/dx = I for a copy or a change of precision: the gradient is the upstream, cast
    # back to the input's dtype (float32 <-> float64 round trips these values exactly).
    rng = np.random.default_rng(0)
    x = tr.tensor(rng.standard_normal((3, 4)).astype(start), requires_grad=True)
    y = convert(x)
    upstream = rng.standard_normal(y.shape).astype(np.float32).astype(y.dtype)
    y.backward(tr.tensor(upstream))
    assert x.grad.dtype == start
    np.testing.assert_array_equal(x.grad.numpy(), upstream.astype(start))


# ---- gradcheck itself ------------------------------------------------------------


class WrongSquare(Function):
    """x^2 with a deliberately wrong backward (x instead of 2x)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (grad * self.x,)


def test_gradcheck_catches_a_wrong_backward_and_names_the_input():
    good = leaf(np.array([0.3, -1.2]))
    bad = leaf(np.array([[1.0, 2.0], [3.0, -4.0]]))
    with pytest.raises(tr.GradcheckError, match=r"input 1 at index \(\d, \d\)") as error:
        tr.gradcheck(lambda a, b: a.sum() + WrongSquare.apply(b), (good, bad))
    # The wrong backward is off by exactly a factor of two: the message shows both values.
    analytic, numeric = map(float, re.findall(r"analytic (\S+), numeric (\S+) ", str(error.value))[0])
    assert numeric == pytest.approx(2 * analytic, rel=1e-5)


def test_gradcheck_catches_a_gradient_sent_to_the_wrong_element():
    class Swapped(Function):
        def forward(self, x):
            return x * np.array([1.0, 2.0])

        def backward(self, grad):
            return (grad * np.array([2.0, 1.0]),)

    with pytest.raises(tr.GradcheckError):
        tr.gradcheck(lambda x: Swapped.apply(x), (leaf(np.array([1.0, 1.0])),))


def test_gradcheck_refuses_float32_and_no_grad_inputs():
    with pytest.raises(TypeError, match="float64"):
        tr.gradcheck(lambda x: x * 2, (tr.ones(2, requires_grad=True),))
    with pytest.raises(ValueError, match="no input requires grad"):
        tr.gradcheck(lambda x: x * 2, (tr.ones(2, dtype=tr.float64),))


def test_gradcheck_leaves_existing_grads_alone():
    x = leaf(np.array([1.0, 2.0]))
    (x * 5).sum().backward()
    tr.gradcheck(lambda t: t * t, (x,))
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])


# ---- against PyTorch ---------------------------------------------------------------

TORCH_EXPRS = {
    "arith": lambda lib, x, y: (x * y - x / (y * y + 1)) ** 2 + (-x),
    "reductions": lambda lib, x, y: x.sum(dim=1, keepdim=True) * y.mean() + x.max(),
    "activations": lambda lib, x, y: lib.relu(x).sigmoid() + lib.tanh(y).exp().log(),
    "shapes": lambda lib, x, y: lib.cat([x.transpose(0, 1), y.permute(1, 0)], dim=1)
    .flatten()[1:5],
    "matmul": lambda lib, x, y: x @ y.T,
    "stack_view": lambda lib, x, y: lib.stack([x, y], dim=0).view(2, -1).sqrt().sum(0),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_EXPRS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_pytorch(name, dtype):
    rng = np.random.default_rng(1)
    x = away_from(rng.uniform(0.2, 2, (3, 4)).astype(dtype))
    y = rng.uniform(0.2, 2, (3, 4)).astype(dtype)
    compare_with_torch(TORCH_EXPRS[name], x, y)


def test_contiguous_copies_only_a_non_contiguous_tensor_and_stays_in_the_graph():
    x = leaf(np.arange(6.0).reshape(2, 3))
    assert x.contiguous() is x
    y = x.transpose(0, 1)
    assert not y.detach().numpy().flags.c_contiguous
    z = y.contiguous()
    assert z.detach().numpy().flags.c_contiguous and np.array_equal(z.detach().numpy(), y.detach().numpy())
    (z * tr.tensor(np.arange(6.0).reshape(3, 2))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(6.0).reshape(3, 2).T)
