"""linear, log_softmax and cross_entropy: gradients, stability, PyTorch, errors."""

import numpy as np
import pytest
from helpers import arrays, compare_with_torch, leaf
from hypothesis import given
from hypothesis import strategies as st

import tinyres as tr
import tinyres.nn.functional as F


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    sizes=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    bias=st.booleans(),
    data=st.data(),
)
def test_linear_passes_gradcheck(lead, sizes, bias, data):
    n_in, n_out = sizes
    x = data.draw(arrays((*lead, n_in)))
    w = data.draw(arrays((n_out, n_in)))
    inputs = [leaf(x), leaf(w)]
    if bias:
        inputs.append(leaf(data.draw(arrays((n_out,)))))
    assert tr.gradcheck(F.linear, inputs)


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    data=st.data(),
)
def test_log_softmax_passes_gradcheck(shape, data):
    x = data.draw(arrays(tuple(shape), low=-5, high=5))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    assert tr.gradcheck(lambda t: F.log_softmax(t, dim), [leaf(x)])


@given(
    n=st.integers(1, 4),
    classes=st.integers(1, 5),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    data=st.data(),
)
def test_cross_entropy_passes_gradcheck(n, classes, reduction, data):
    x = data.draw(arrays((n, classes), low=-5, high=5))
    target = tr.tensor(np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))))
    assert tr.gradcheck(
        lambda t: F.cross_entropy(t, target, reduction=reduction), [leaf(x)]
    )


@pytest.mark.torch
@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch_and_stays_finite(scale, reduction):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 5)) * scale).astype(np.float32)
    logits[0] = [scale, -scale, 0, scale, -scale]  # tied extreme logits
    target = np.array([0, 1, 4, 2, 3, 1])
    compare_with_torch(lambda lib, x, t: lib.nn.functional.cross_entropy(x, t, reduction=reduction),
                       logits, target)
    loss = F.cross_entropy(tr.tensor(logits, requires_grad=True), tr.tensor(target), reduction=reduction)
    assert np.isfinite(loss.detach().numpy()).all()


@pytest.mark.torch
def test_unbatched_cross_entropy_and_log_softmax_match_torch():
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal(5) * 1e4).astype(np.float32)
    compare_with_torch(lambda lib, x, t: lib.nn.functional.cross_entropy(x, t), logits, np.array(3))
    for dim in (0, -1):
        compare_with_torch(lambda lib, x: lib.nn.functional.log_softmax(x, dim), logits)  # noqa: B023
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    compare_with_torch(lambda lib, x: lib.nn.functional.log_softmax(x, dim=1), x)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape, bias):
    rng = np.random.default_rng(2)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (shape, (4, 5), (4,)))
    if bias:
        compare_with_torch(lambda lib, x, w, b: lib.nn.functional.linear(x, w, b), x, w, b)
    else:
        compare_with_torch(lambda lib, x, w: lib.nn.functional.linear(x, w), x, w)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: F.linear(tr.randn(2, 3), tr.randn(4, 5)), ValueError,
         "input has 3 features (shape (2, 3)), weight expects 5"),
        (lambda: F.linear(tr.randn(2, 3), tr.randn(3)), ValueError, "weight must be 2-D"),
        (lambda: F.linear(tr.randn(2, 3), tr.randn(4, 3), tr.randn(3)), ValueError,
         "bias has shape (3,), expected (4,)"),
        (lambda: F.linear(tr.randn(2, 3), tr.randn(4, 3, dtype=tr.float64)), TypeError,
         "float32, float64"),
        (lambda: F.log_softmax(tr.randn(2, 3), dim=2), IndexError, "dim 2 is out of range"),
        (lambda: F.log_softmax(tr.tensor([1, 2]), dim=0), TypeError, "got dtype int64"),
        (lambda: F.cross_entropy(tr.randn(2, 3), tr.tensor([0, 3])), IndexError,
         "target 3 is out of range for 3 classes"),
        (lambda: F.cross_entropy(tr.randn(2, 3), tr.tensor([-1, 0])), IndexError, "target -1"),
        (lambda: F.cross_entropy(tr.randn(2, 3), tr.tensor([0.0, 1.0])), TypeError,
         "target must hold integer class indices, got dtype float32"),
        (lambda: F.cross_entropy(tr.randn(2, 3), tr.tensor([0, 1, 2])), ValueError,
         "logits have batch size 2, target has 3"),
        (lambda: F.cross_entropy(tr.randn(2, 3, 4, 5), tr.tensor([0, 1])), ValueError,
         "got logits (2, 3, 4, 5) and target (2,)"),
        (lambda: F.cross_entropy(tr.randn(2, 3), tr.tensor([0, 1]), reduction="avg"), ValueError,
         "reduction must be one of"),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
