"""In-place ops, version counters and ``.data``: PyTorch's behaviour, case by case.

Each case of issue 13 is a test here: the silently wrong gradients it reported now
raise PyTorch's ``RuntimeError``, and the in-place ops give PyTorch's gradients.
Scenarios are written once against ``lib`` (tinyres or torch), so the same code runs
in both and the torch cross-checks compare like with like.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyres as tr
from tinyres import nn

MODIFIED = "modified by an inplace operation"


def leaf(values, lib=tr, dtype=None):
    return lib.tensor(values, dtype=dtype, requires_grad=True)


# ---- the cases from the issue ---------------------------------------------------------

def zero_after_mul(lib):
    a, b = leaf([1.0, 2.0, 3.0], lib), lib.tensor([4.0, 5.0, 6.0])
    c = a * b
    b.zero_()
    c.sum().backward()
    return a.grad


def relu_output_zeroed_then_used(lib):
    x = leaf([1.0, -2.0, 3.0], lib)
    y = lib.relu(x * 2)
    z = y * 3
    y.zero_()
    (z + y).sum().backward()
    return x.grad


def conv1x1_input_zeroed(lib):
    lib.manual_seed(0)
    conv = lib.nn.Conv2d(2, 3, 1)
    x = lib.randn(1, 2, 4, 4) * 1.0
    out = conv(x)
    x.zero_()
    out.sum().backward()
    return conv.weight.grad


def step_between_forward_and_backward(lib):
    lib.manual_seed(0)
    model = lib.nn.Sequential(lib.nn.Conv2d(1, 2, 3), lib.nn.ReLU(), lib.nn.Conv2d(2, 1, 3))
    opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = lib.randn(2, 1, 6, 6)
    model(x).sum().backward()
    opt.step()
    loss = model(x).sum()
    opt.step()  # changes the weights the forward above used
    loss.backward()
    return model[0].weight.grad


def adam_step_between_forward_and_backward(lib):
    lib.manual_seed(0)
    lin = lib.nn.Linear(3, 2)
    opt = lib.optim.Adam(lin.parameters(), lr=0.1)
    x = lib.randn(4, 3).requires_grad_()  # dx reads W, so W is saved (see the next test)
    lin(x).sum().backward()
    opt.step()
    loss = lin(x).sum()
    opt.step()
    loss.backward()
    return lin.weight.grad


def leaf_modified_in_place(lib):
    a = leaf([1.0, 2.0], lib)
    a.add_(1)


def leaf_modified_by_iadd(lib):
    a = leaf([1.0, 2.0], lib)
    a += 1


def index_assign_into_leaf(lib):
    a = leaf([1.0, 2.0], lib)
    a[0] = 5.0


def relu_inplace_then_add_inplace(lib):
    x = leaf([1.0, -2.0, 3.0], lib)
    y = x * 1
    y.relu_()
    y.add_(1)
    y.sum().backward()


def sigmoid_output_scaled(lib):
    x = leaf([1.0, 2.0], lib)
    y = x.sigmoid()
    y.mul_(2)
    y.sum().backward()


def mul_by_itself_in_place(lib):
    x = leaf([1.0, 2.0], lib)
    y = x * 1
    y.mul_(y)
    y.sum().backward()


def detach_shares_the_counter(lib):
    x = leaf([1.0, 2.0], lib)
    y = x.exp()
    y.detach().zero_()
    y.sum().backward()


def view_shares_the_counter(lib):
    x = leaf([[1.0, 2.0], [3.0, 4.0]], lib)
    y = x.tanh()
    y.detach().view(4).mul_(2)
    y.sum().backward()


RAISING = [zero_after_mul, relu_output_zeroed_then_used, conv1x1_input_zeroed,
           step_between_forward_and_backward, adam_step_between_forward_and_backward,
           relu_inplace_then_add_inplace, sigmoid_output_scaled, mul_by_itself_in_place,
           detach_shares_the_counter, view_shares_the_counter]
LEAF_REFUSED = [leaf_modified_in_place, leaf_modified_by_iadd, index_assign_into_leaf]


@pytest.mark.parametrize("case", RAISING, ids=lambda f: f.__name__)
def test_modified_saved_tensor_raises_pytorchs_error(case):
    with pytest.raises(RuntimeError, match=rf"{MODIFIED}: \[float32 \[[0-9, ]+\]\].* is at version \d+; "
                                           r"expected version \d+ instead"):
        case(tr)


@pytest.mark.parametrize("case", RAISING, ids=lambda f: f.__name__)
def test_pytorch_raises_in_the_same_cases(case):
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match=MODIFIED):
        case(torch)


# ---- an index tensor changed in place after the indexing op --------------------------
# Backward scatters the gradient through the index, so it reads the index tensor: PyTorch
# saves it, and an in-place change before backward raises instead of moving the gradient.

def integer_index_refilled(lib):
    x = leaf([1.0, 2.0, 3.0, 4.0], lib)
    i = lib.tensor([0, 1])
    y = x[i] * lib.tensor([10.0, 20.0])
    i.fill_(3)
    y.sum().backward()
    return x.grad


def mask_changed(lib):
    x = leaf([1.0, 2.0, 3.0, 4.0], lib)
    mask = lib.tensor([True, False, True, False])
    y = x[mask] * lib.tensor([10.0, 20.0])
    mask[1] = True
    y.sum().backward()
    return x.grad


def index_in_a_tuple_refilled(lib):
    x = leaf([[1.0, 2.0], [3.0, 4.0]], lib)
    i = lib.tensor([0, 1])
    y = x[i, i] * lib.tensor([10.0, 20.0])
    i.fill_(0)
    y.sum().backward()
    return x.grad


def assignment_index_refilled(lib):
    x = leaf([1.0, 2.0], lib)
    z = lib.zeros(4) * 1.0
    i = lib.tensor([0, 1])
    z[i] = x * lib.tensor([10.0, 20.0])
    i.fill_(3)
    z.sum().backward()
    return x.grad


INDEX_CHANGED = [integer_index_refilled, mask_changed, index_in_a_tuple_refilled, assignment_index_refilled]


@pytest.mark.parametrize("case", INDEX_CHANGED, ids=lambda f: f.__name__)
def test_index_changed_in_place_after_forward_raises(case):
    with pytest.raises(RuntimeError, match=rf"{MODIFIED}: \[(int64|bool) \[[0-9, ]+\]\] is at version 1; "
                                           r"expected version 0 instead"):
        case(tr)


@pytest.mark.parametrize("case", INDEX_CHANGED, ids=lambda f: f.__name__)
def test_pytorch_raises_when_the_index_changed(case):
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match=MODIFIED):
        case(torch)


def test_index_changed_only_after_backward_gives_the_gradient():
    """The saved index is checked when backward runs, not later: no error, the right gradient."""
    grads = []
    for lib in (tr, pytest.importorskip("torch")):
        x = leaf([1.0, 2.0, 3.0, 4.0], lib)
        i = lib.tensor([0, 1, 1])
        y = x[i] * lib.tensor([10.0, 20.0, 30.0])
        y.sum().backward()
        i.fill_(3)
        grads.append(x.grad.tolist())
    assert grads[0] == grads[1] == [10.0, 50.0, 0.0, 0.0]


@pytest.mark.parametrize("case", LEAF_REFUSED, ids=lambda f: f.__name__)
def test_in_place_on_a_leaf_that_requires_grad_is_refused(case):
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        case(tr)


@pytest.mark.parametrize("case", LEAF_REFUSED, ids=lambda f: f.__name__)
def test_pytorch_refuses_the_same_leaf_changes(case):
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        case(torch)


def test_error_names_the_op_that_made_the_modified_tensor_and_both_versions():
    with pytest.raises(RuntimeError) as info:
        relu_inplace_then_add_inplace(tr)
    assert "which is output 0 of ReluBackward, is at version 2; expected version 1 instead" in str(info.value)


def test_weight_not_read_by_backward_may_change_in_both():
    """PyTorch saves only what a wanted gradient reads: dW = g^T x never reads W."""
    grads = []
    for lib in (tr, pytest.importorskip("torch")):
        lib.manual_seed(0)
        lin = lib.nn.Linear(3, 2)
        x = lib.tensor(np.linspace(-1, 1, 12).reshape(4, 3), dtype=lib.float32)
        loss = lin(x).sum()
        with lib.no_grad():
            lin.weight.mul_(2)
        loss.backward()
        grads.append(lin.weight.grad.numpy().copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)


def test_in_place_on_a_leaf_is_allowed_under_no_grad_and_bumps_the_version():
    a = leaf([1.0, 2.0])
    with tr.no_grad():
        a.add_(1)
        a *= 2
    assert a.tolist() == [4.0, 6.0] and a._version == 2 and a.is_leaf


def test_optimizer_step_after_backward_still_trains():
    """The usual order (forward, backward, step) raises nothing and matches torch's weights."""
    weights = {}
    for lib in (tr, pytest.importorskip("torch")):
        lib.manual_seed(0)
        lin = lib.nn.Linear(3, 2)
        with lib.no_grad():
            lin.weight.copy_(lib.tensor(np.arange(6.0).reshape(2, 3) / 10, dtype=lib.float32))
            lin.bias.zero_()
        opt = lib.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
        x = lib.tensor(np.linspace(-1, 1, 12).reshape(4, 3), dtype=lib.float32)
        for _ in range(3):
            opt.zero_grad()
            (lin(x) ** 2).sum().backward()
            opt.step()
        weights[lib.__name__] = lin.weight.detach().numpy().copy()
    np.testing.assert_allclose(weights["tinyres"], weights["torch"], rtol=1e-5, atol=1e-6)


# ---- the in-place ops: values, gradients, PyTorch ---------------------------------------

# Each expression modifies a non-leaf (y = x * 1, or a fresh zeros tensor) in place and
# returns it; ``inputs`` are positive and off every kink (clamp bounds, ReLU's 0).
INPLACE = {
    "add_": (lambda lib, x, w: (x * 1).add_(w), 2),
    "add_alpha": (lambda lib, x, w: (x * 1).add_(w, alpha=-0.5), 2),
    "sub_": (lambda lib, x, w: (x * 1).sub_(w), 2),
    "mul_": (lambda lib, x, w: (x * 1).mul_(w), 2),
    "div_": (lambda lib, x, w: (x * 1).div_(w), 2),
    "iadd": (lambda lib, x, w: _iop(x * 1, "__iadd__", w), 2),
    "isub": (lambda lib, x, w: _iop(x * 1, "__isub__", w), 2),
    "imul": (lambda lib, x, w: _iop(x * 1, "__imul__", w), 2),
    "itruediv": (lambda lib, x, w: _iop(x * 1, "__itruediv__", w), 2),
    "mul_scalar": (lambda lib, x: (x * 1).mul_(3.0), 1),
    "clamp_": (lambda lib, x: (x * 1).clamp_(0.4, 1.3), 1),
    "clamp_min": (lambda lib, x: (x * 1).clamp_(min=0.8), 1),
    "relu_": (lambda lib, x: (x - 1).relu_(), 1),
    "copy_": (lambda lib, x, w: lib.zeros(2, 3, dtype=lib.float64).copy_(w * 2), 2),
    "copy_into_graph": (lambda lib, x, w: (x * 1).copy_(w), 2),
    "fill_": (lambda lib, x: (x * 1).fill_(2.0) * x, 1),
    "zero_": (lambda lib, x: (x * 1).zero_() + x, 1),
    "setitem_row": (lambda lib, x, w: _setitem(x * 1, 0, w[1] * 2), 2),
    "setitem_mask": (lambda lib, x, w: _setitem(x * 1, x > 1, 0.0), 2),
    "setitem_number": (lambda lib, x: _setitem(x * 1, (1, 2), 7.0) * x, 1),
    "chain": (lambda lib, x, w: (x * 2).mul_(w).add_(x).div_(w + 1).relu_(), 2),
    "relu_module": (lambda lib, x: lib.nn.ReLU(inplace=True)(x - 1) * x, 1),
    "F_relu_inplace": (lambda lib, x: lib.nn.functional.relu(x - 1, inplace=True) * x, 1),
    "F_relu_": (lambda lib, x: lib.nn.functional.relu_(x - 1) * x, 1),
}


def _iop(t, name, other):
    return getattr(t, name)(other)


def _setitem(t, index, value):
    t[index] = value
    return t


def _inputs(n_inputs):
    rng = np.random.default_rng(7)
    x = rng.uniform(0.1, 2.0, (2, 3))
    x = np.where(np.abs(x - 1.0) < 0.1, x + 0.3, x)  # off ReLU(x - 1)'s kink and clamp's bounds
    x = np.where(np.abs(x - 0.4) < 0.05, x + 0.2, x)
    w = rng.uniform(0.5, 1.5, (3,))  # broadcast over x's rows
    return [x, w][:n_inputs]


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_in_place_op_gradcheck(name):
    expr, n = INPLACE[name]
    inputs = tuple(tr.tensor(a, requires_grad=True) for a in _inputs(n))
    assert tr.gradcheck(lambda *t: expr(tr, *t), inputs)


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_in_place_op_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    expr, n = INPLACE[name]
    arrays = _inputs(n)
    rng = np.random.default_rng(1)
    results = {}
    for lib in (tr, torch):
        ins = [lib.tensor(a, requires_grad=True) for a in arrays]
        out = expr(lib, *ins)
        upstream = lib.tensor(rng.standard_normal(out.shape) if lib is tr else results["up"])
        results["up"] = upstream.numpy()
        (out * upstream).sum().backward()
        results[lib.__name__] = [out.detach().numpy().copy()] + [
            None if i.grad is None else i.grad.numpy().copy() for i in ins
        ]
    for ours, theirs in zip(results["tinyres"], results["torch"]):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_in_place_op_returns_self_and_writes_into_its_memory():
    x = tr.tensor([1.0, -2.0, 3.0])
    memory = x.numpy()
    assert x.add_(1) is x and x.mul_(2) is x and x.clamp_(0, 7) is x and x.relu_() is x
    assert memory.tolist() == [4.0, 0.0, 7.0] and x._version == 4


def test_dropout_inplace_writes_into_its_input_and_keeps_the_gradient():
    tr.manual_seed(0)
    x = tr.ones(4, 5, requires_grad=True)
    h = x * 1
    out = nn.Dropout(0.5, inplace=True)(h)
    assert out is h and h._version == 1
    kept = out.detach().numpy().copy()
    assert set(kept.ravel().tolist()) <= {0.0, 2.0}
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept)  # d(x * mask/(1-p))/dx = mask/(1-p)


def test_iadd_modifies_in_place_so_every_name_sees_it():
    a = tr.zeros(2)
    alias = a
    a += tr.ones(2)
    assert a is alias and alias.tolist() == [1.0, 1.0]


def test_residual_add_into_a_batch_norm_output_seen_by_a_hook():
    """The issue's case: a forward hook that kept bn's output sees it after ``out += identity``."""
    tr.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    kept = []
    bn.register_forward_hook(lambda module, inputs, output: kept.append(output))
    x = tr.randn(2, 4, 5, 5, requires_grad=True)
    out = bn(x * 2)
    before = out.detach().numpy().copy()
    out += x  # the seeds' residual add
    assert kept[0] is out
    np.testing.assert_allclose(kept[0].detach().numpy(), before + x.detach().numpy(), rtol=1e-6)
    tr.relu(out).sum().backward()  # batch norm saves its input, not its output: nothing to refuse
    assert x.grad.shape == x.shape


def test_in_place_shape_and_dtype_errors_are_pytorchs():
    shape_error = r"output with shape \[3\] doesn't match the broadcast shape \[2, 3\]"
    with pytest.raises(RuntimeError, match=shape_error):
        tr.zeros(3).add_(tr.ones(2, 3))
    cast_error = "result type float64 can't be cast to the desired output type int64"
    with pytest.raises(RuntimeError, match=cast_error):
        a = tr.zeros(3, dtype=tr.int64)
        a += tr.ones(3)
    with pytest.raises(RuntimeError, match="at least one of 'min' or 'max'"):
        tr.zeros(2).clamp_()


def test_failed_in_place_op_leaves_the_tensor_unchanged():
    a = tr.tensor([1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError):
        a.add_(tr.ones(2, 3))
    assert a.tolist() == [1.0, 2.0, 3.0] and a._version == 0


def test_in_place_on_a_view_in_the_graph_is_refused_clearly():
    x = leaf([1.0, 2.0])
    y = x * 1
    with pytest.raises(RuntimeError, match="in-place operation on a view"):
        y[0].mul_(3)
    with pytest.raises(RuntimeError, match="in-place operation on a view"):
        y.view(2).add_(1)


def test_base_changed_after_a_view_was_taken_raises_instead_of_a_stale_gradient():
    x = leaf([1.0, 2.0])
    y = x * 1
    v, row = y[0], y.view(1, 2)
    y.mul_(3)  # v now reads 3 * x[0]; its recorded history says x[0]
    with pytest.raises(RuntimeError, match=r"view .* was taken before its base was modified in place"):
        v.backward()
    with pytest.raises(RuntimeError, match=r"version 0, now 1"):
        row * 2


def test_view_used_before_the_in_place_change_is_fine():
    """``y[0] = y[0] * 3``: the view is consumed before the write, as in PyTorch."""
    x = leaf([1.0, 2.0])
    y = x * 1
    y[0] = y[0] * 3
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 1.0]


def test_in_place_with_a_grad_operand_turns_a_plain_tensor_into_a_graph_node():
    w = leaf([1.0, 2.0])
    a = tr.zeros(2)
    a.add_(w * 3)
    assert a.requires_grad and not a.is_leaf
    a.sum().backward()
    assert w.grad.tolist() == [3.0, 3.0]


def test_consumers_of_the_old_value_keep_its_gradient():
    """z used y before y.mul_(w): z's gradient goes to the old y, not through the mul."""
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    y = x * 1
    z = y + 0
    y.mul_(w)
    (z + y).sum().backward()
    assert x.grad.tolist() == [4.0, 5.0]  # 1 (through z) + w (through y)
    assert w.grad.tolist() == [1.0, 2.0]


# ---- version counters and .data -------------------------------------------------------

def test_version_counter_is_shared_by_views_and_detach_but_not_data():
    a = tr.zeros(2, 3)
    view, row, detached, data = a.view(6), a[0], a.detach(), a.data
    a.add_(1)
    detached.mul_(2)
    row.fill_(5.0)
    data.add_(1)  # invisible to autograd, as in PyTorch
    assert (a._version, view._version, row._version, detached._version) == (3, 3, 3, 3)
    assert data._version == 1
    assert a.tolist() == [[6.0, 6.0, 6.0], [3.0, 3.0, 3.0]]


def test_version_counters_match_pytorch():
    torch = pytest.importorskip("torch")
    seen = {}
    for lib in (tr, torch):
        a = lib.zeros(3)
        v = a.view(3)
        a.add_(1)
        b = a.detach()
        b.add_(1)
        d = a.data
        d.add_(1)
        a[0] = 2.0
        seen[lib.__name__] = (a._version, v._version, b._version, d._version)
    assert seen["tinyres"] == seen["torch"]


def test_changes_through_data_are_invisible_to_version_checks():
    x = leaf([1.0, 2.0])
    y = x.exp()
    y.data.zero_()
    y.sum().backward()  # PyTorch's meaning: no error, and the gradient uses the new values
    assert x.grad.tolist() == [0.0, 0.0]


def test_data_is_a_tensor_pytorch_code_can_call():
    p = nn.Linear(3, 2).weight
    assert isinstance(p.data, tr.Tensor) and not p.data.requires_grad
    assert p.data.size() == (2, 3) and p.data.numpy().shape == (2, 3)
    before = p.detach().numpy().copy()
    p.data.add_(1.0)
    np.testing.assert_allclose(p.detach().numpy(), before + 1)
    x = tr.tensor([3.0, 1.0, 2.0], requires_grad=True)
    assert x.data.max().item() == 3.0


# ---- random interleavings of in-place ops and backward ---------------------------------
#
# A program is a list of steps on a running tensor y (starting as y = x * 1); each is an
# out-of-place op (y becomes a new tensor) or an in-place op on y. Hand-derived rule, from
# what each op's backward reads: exp, tanh, relu and relu_ save their output; mul by w
# saves y and w; add and in-place mul/add by w or a number save nothing of y (mul_ keeps a
# private copy of its old self). backward must raise exactly when a saved tensor's version
# changed since it was saved; otherwise it must give the finite-difference gradient.

STEPS = ["exp", "tanh", "relu", "mul_w", "add_w", "relu_", "mul_w_", "add_w_", "mul2_", "zero_"]
SAVES_OUTPUT = {"exp", "tanh", "relu", "relu_"}


def run_program(lib, steps, x, w, check=None):
    """Run ``steps``; with ``check``, record (tensor, version) pairs the rule says are saved."""
    y = x * 1
    saved = []
    for step in steps:
        if step == "exp":
            y = (y * 0.3).exp()
        elif step == "tanh":
            y = y.tanh()
        elif step == "relu":
            y = lib.relu(y - 0.5)
        elif step == "mul_w":
            saved.append((y, y._version))
            y = y * w
        elif step == "add_w":
            y = y + w
        elif step == "relu_":
            y.sub_(0.5).relu_()
        elif step == "mul_w_":
            y.mul_(w)
        elif step == "add_w_":
            y.add_(w)
        elif step == "mul2_":
            y.mul_(2.0)
        elif step == "zero_":
            y.zero_()
        if step in SAVES_OUTPUT:
            saved.append((y, y._version))
    if check is not None:
        check.extend(saved)
    return y


programs = st.lists(st.sampled_from(STEPS), min_size=1, max_size=6)


def _xw(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.7, 1.6, 3), rng.uniform(0.6, 1.4, 3)


@settings(deadline=None)
@given(steps=programs, seed=st.integers(0, 2**16))
def test_random_interleavings_follow_the_saved_tensor_rule(steps, seed):
    """Torch-free: raise exactly where the rule says, else finite differences agree."""
    xa, wa = _xw(seed)
    x, w = leaf(xa, dtype=tr.float64), leaf(wa, dtype=tr.float64)
    saved = []
    y = run_program(tr, steps, x, w, check=saved)
    stale = any(t._version != v for t, v in saved)
    if stale:
        with pytest.raises(RuntimeError, match=MODIFIED):
            y.sum().backward()
        return
    tr.gradcheck(lambda a, b: run_program(tr, steps, a, b), (x, w))


@settings(deadline=None)
@given(steps=programs, seed=st.integers(0, 2**16))
def test_random_interleavings_match_pytorch(steps, seed):
    torch = pytest.importorskip("torch")
    xa, wa = _xw(seed)
    outcome = {}
    for lib in (tr, torch):
        x, w = leaf(xa, lib, lib.float64), leaf(wa, lib, lib.float64)
        try:
            run_program(lib, steps, x, w).sum().backward()
        except RuntimeError as error:
            assert MODIFIED in str(error)
            outcome[lib.__name__] = "raised"
            continue
        outcome[lib.__name__] = (x.grad.numpy().copy(), None if w.grad is None else w.grad.numpy().copy())
    ours, theirs = outcome["tinyres"], outcome["torch"]
    if "raised" in (ours, theirs):
        assert ours == theirs, f"{steps}: tinyres {ours!r}, torch {theirs!r}"
        return
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-10, atol=1e-12)
    assert (ours[1] is None) == (theirs[1] is None)
    if ours[1] is not None:
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-12)
