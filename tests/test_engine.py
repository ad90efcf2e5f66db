"""The autograd engine: graph order, reuse, accumulation, freeing, errors."""

import gc
import weakref

import numpy as np
import pytest

import tinyres as tr
from tinyres.engine import Function, unbroadcast


def test_reused_node_gets_the_sum_of_its_uses():
    a = tr.tensor([1.0, -2.0, 3.0], requires_grad=True)
    b = a + a
    c = b + b
    c.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [4.0, 4.0, 4.0])


class Held(Function):
    """y = x, whose backward returns an array the op keeps (as an op may return a saved array)."""

    held = np.array([1.0, 2.0, 3.0])

    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return (self.held,)


@pytest.mark.parametrize("uses", [2, 3, 6])
def test_a_gradient_reaching_a_node_many_times_is_summed_without_writing_an_array_an_op_returned(uses):
    # The walk adds a node's later gradients in place, but only into a sum it made itself:
    # the array backward returned, and the one Add sends to both of its inputs, stay as they were.
    x = tr.tensor([0.5, -1.0, 2.0], dtype=tr.float64, requires_grad=True)
    h = x * 1.0  # a non-leaf reached by `uses` gradients
    out = Held.apply(h)
    for _ in range(uses - 1):
        out = out + Held.apply(h)
    seed = np.array([10.0, 20.0, 30.0])
    out.backward(tr.tensor(seed))
    np.testing.assert_array_equal(Held.held, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(seed, [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(x.grad.numpy(), uses * Held.held)
    y = tr.tensor([1.0, 2.0], requires_grad=True)
    (grad,) = tr.autograd.grad([y * 2.0, y * 3.0, y * 4.0], [y], [tr.ones(2)] * 3)
    np.testing.assert_array_equal(grad.numpy(), [9.0, 9.0])


def test_a_zero_dimensional_node_reached_three_times():
    x = tr.tensor([1.0, 2.0], dtype=tr.float64, requires_grad=True)
    s = x.sum()  # 0-d: NumPy's a + b of two 0-d arrays is a scalar, not an array to add into
    (s * s + s).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [7.0, 7.0])  # 2s + 1


def test_diamond_graph_gradient():
    x = tr.tensor(3.0, requires_grad=True)
    y = x * x  # 9
    z = y * x + y  # x^3 + x^2 -> dz/dx = 3x^2 + 2x = 33
    z.backward()
    assert x.grad.item() == pytest.approx(33.0)


def test_chain_of_ten_thousand_ops_has_no_recursion_error():
    x = tr.tensor([0.5], dtype=tr.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-9)


def test_leaf_gradients_accumulate_across_backward_calls():
    w = tr.tensor([1.0, 2.0], requires_grad=True)
    (w * 3).sum().backward()
    (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [3 + 2, 3 + 4])


def test_intermediate_results_are_freed_after_backward():
    a = tr.randn(5, requires_grad=True)
    b = a * 2
    c = (b * b).sum()
    ref = weakref.ref(b)
    del b
    gc.collect()
    assert ref() is not None, "the graph must keep b alive until backward"
    c.backward()
    gc.collect()
    assert ref() is None, "backward must release the graph"


def test_second_backward_through_freed_graph_raises():
    a = tr.randn(3, requires_grad=True)
    loss = (a * a).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_retain_graph_allows_a_second_backward():
    a = tr.tensor([1.0, 2.0], requires_grad=True)
    loss = (a * a).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(a.grad.numpy(), [4.0, 8.0])


def test_backward_on_non_scalar_needs_gradient():
    a = tr.randn(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2, 3\)"):
        (a * 2).backward()


def test_gradient_of_wrong_shape_is_refused():
    a = tr.randn(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(3, 2\).*\(2, 3\)"):
        (a * 2).backward(tr.ones(3, 2))


def test_explicit_gradient_for_non_scalar():
    a = tr.tensor([1.0, 2.0], requires_grad=True)
    (a * a).backward(tr.tensor([0.5, -1.0]))
    np.testing.assert_allclose(a.grad.numpy(), [1.0, -4.0])


def test_backward_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tr.ones(2).sum().backward()


def test_no_grad_records_nothing():
    w = tr.ones(3, requires_grad=True)
    with tr.no_grad():
        y = w * 2
        assert not tr.is_grad_enabled()
    assert tr.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_no_grad_restores_state_after_exception():
    with pytest.raises(ValueError), tr.no_grad():
        raise ValueError
    assert tr.is_grad_enabled()


def test_requires_grad_propagates():
    a, b = tr.ones(2), tr.ones(2, requires_grad=True)
    assert not (a * 2).requires_grad
    assert (a * b).requires_grad
    assert (a * b).grad_fn is not None


def test_detach_cuts_the_graph_and_shares_data():
    a = tr.ones(2, requires_grad=True)
    d = (a * 2).detach()
    assert d.is_leaf and not d.requires_grad
    b = a * 1
    shared = b.detach()
    shared.data[0] = 7.0
    assert b.detach().numpy()[0] == 7.0


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating-point"):
        tr.tensor([1, 2], requires_grad=True)


def test_retain_grad_and_hooks():
    a = tr.tensor([1.0, 2.0], requires_grad=True)
    b = a * 3
    b.retain_grad()
    seen = []
    b.register_hook(lambda g: seen.append(g.numpy().copy()))
    a.register_hook(lambda g: g * 10)  # a hook may replace the gradient
    (b * b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [6.0, 12.0])
    np.testing.assert_allclose(seen[0], [6.0, 12.0])
    np.testing.assert_allclose(a.grad.numpy(), [180.0, 360.0])


def test_non_leaf_grad_is_not_kept_without_retain_grad():
    a = tr.tensor([1.0], requires_grad=True)
    b = a * 2
    (b * b).sum().backward()
    assert b.grad is None


def test_iadd_residual_add_sends_the_gradient_both_ways():
    x = tr.tensor([1.0, -1.0], requires_grad=True)
    out = x * 2
    identity = x
    out += identity
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_float32_default_and_float64_kept():
    assert tr.tensor([1.0]).dtype == np.float32
    assert tr.randn(2).dtype == np.float32
    x = tr.randn(2, dtype=tr.float64, requires_grad=True)
    (x * 2.5).sum().backward()
    assert (x * 2.5).dtype == np.float64 and x.grad.dtype == np.float64


def test_mixed_float_dtypes_are_refused():
    with pytest.raises(TypeError, match="float32 and float64"):
        tr.ones(2) + tr.ones(2, dtype=tr.float64)


def test_tensor_protocols():
    t = tr.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert np.asarray(t).shape == (2, 2) and np.asarray(t).dtype == np.float32
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert t.size() == (2, 2) and t.size(1) == 2 and t.numel() == 4 and t.ndim == 2
    assert t.sum().item() == 10.0
    text = repr(t * tr.ones(2, 2, requires_grad=True))
    assert "shape=(2, 2)" in text and "float32" in text and "MulBackward" in text
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    with pytest.raises(RuntimeError, match="detach"):
        tr.ones(1, requires_grad=True).numpy()


def test_max_with_dim_returns_values_and_indices():
    t = tr.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]], requires_grad=True)
    values, indices = t.max(dim=1)
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    values.sum().backward()
    # A tie sends the gradient to the first maximum only.
    np.testing.assert_array_equal(t.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


def test_unbroadcast_reduces_to_shape():
    # Distinct values show which elements were summed (an all-ones gradient would only
    # show how many): g[i, j, k] = 100 i + 10 j + k.
    g = np.arange(4)[:, None, None] * 100.0 + np.arange(2)[None, :, None] * 10 + np.arange(3)
    # to (3,): sum over i and j -> 8 k + 2*600 + 4*10 = 1240 + 8 k
    np.testing.assert_array_equal(unbroadcast(g, (3,)), [1240.0, 1248.0, 1256.0])
    # to (2, 1): sum over i and k -> 3*600 + 12*10 j + 4*3 = 1812 + 120 j
    np.testing.assert_array_equal(unbroadcast(g, (2, 1)), [[1812.0], [1932.0]])
    # to (4, 1, 3): sum over j only -> 200 i + 10 + 2 k
    np.testing.assert_array_equal(unbroadcast(g, (4, 1, 3)), 200.0 * np.arange(4)[:, None, None]
                                  + 10 + 2 * np.arange(3))
    np.testing.assert_array_equal(unbroadcast(g, ()), g.sum())
    assert unbroadcast(g, g.shape) is g
    with pytest.raises(ValueError):
        unbroadcast(g, (5,))


def test_a_function_returning_the_wrong_number_of_gradients_is_reported():
    class Broken(Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad, grad

    a = tr.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="returned 2 gradients for 1 inputs"):
        Broken.apply(a).sum().backward()


def test_creation_functions():
    tr.manual_seed(3)
    a = tr.randn(2, 3)
    tr.manual_seed(3)
    assert np.array_equal(a.numpy(), tr.randn(2, 3).numpy())
    assert tr.zeros((2, 3)).shape == (2, 3)
    assert tr.ones_like(a).numpy().sum() == 6
    assert tr.arange(5).dtype == np.int64 and tr.arange(0, 1, 0.25).shape == (4,)
    arr = np.zeros(3)
    t = tr.from_numpy(arr)
    arr[0] = 1.0
    assert t.numpy()[0] == 1.0 and t.dtype == np.float64
    with pytest.raises(ValueError, match="non-negative"):
        tr.zeros(-1)


def test_stack_default_and_negative_dims():
    a, b = tr.tensor([1.0, 2.0, 3.0]), tr.tensor([4.0, 5.0, 6.0])
    assert tr.stack([a, b]).numpy().tolist() == [[1, 2, 3], [4, 5, 6]]  # dim 0 by default
    assert tr.stack([a, b], dim=-1).numpy().tolist() == [[1, 4], [2, 5], [3, 6]]  # -1: a new last axis


def test_flatten_and_views():
    x = tr.randn(2, 3, 4, requires_grad=True)
    assert tr.flatten(x, 1).shape == (2, 12)
    assert x.view(x.size(0), -1).shape == (2, 12)
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    with pytest.raises(RuntimeError, match="invalid for input of shape"):
        x.view(5, -1)


# ---- the core's shape: one file, read top to bottom, below ops and nn --------------------
def test_the_core_imports_neither_ops_nor_nn_and_stays_short():
    import ast
    from pathlib import Path

    import tinyres.engine as engine

    source = Path(engine.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    forbidden = sorted(m for m in imported if m.startswith(("tinyres.ops", "tinyres.nn")))
    assert not forbidden, f"tinyres/engine.py imports {forbidden}; the core must not depend on ops or nn"
    lines = source.count("\n")
    assert lines <= 520, f"tinyres/engine.py has {lines} lines; the core should read in one sitting"
    starts = [i for i, text in enumerate(source.splitlines(), 1) if text.startswith("def backpropagate")]
    walk_line = starts[0]
    assert walk_line < 60, f"the walk starts at line {walk_line}; keep it near the top"


# ---- register_post_accumulate_grad_hook, against PyTorch's behaviour ---------------------
def post_hook_story(lib):
    """What the hooks saw, in order, over two backward passes, a removal and the refusals."""
    x = lib.ones(3, requires_grad=True)
    seen = []
    handle = x.register_post_accumulate_grad_hook(lambda t: seen.append(("a", t.grad.tolist())))
    x.register_post_accumulate_grad_hook(lambda t: seen.append(("b", t is x)))
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    handle.remove()
    handle.remove()  # twice is harmless
    (x * 1).sum().backward()
    lib.autograd.grad((x * 2).sum(), x)  # leaves .grad alone: no hook
    unused = lib.ones(2, requires_grad=True)
    unused.register_post_accumulate_grad_hook(lambda t: seen.append("unused"))
    (x * 2).sum().backward()  # unused gets no gradient: no call
    errors = []
    for bad in (lambda: (x * 2).register_post_accumulate_grad_hook(print),
                lambda: lib.ones(2).register_post_accumulate_grad_hook(print)):
        try:
            bad()
        except RuntimeError as error:
            errors.append("non-leaf" in str(error) or "require" in str(error))
    returns = x.register_post_accumulate_grad_hook(lambda t: t.grad * 0)
    try:
        (x * 2).sum().backward()
    except RuntimeError as error:
        errors.append("should return None" in str(error))
    returns.remove()
    cleared = x.register_post_accumulate_grad_hook(lambda t: setattr(t, "grad", None))
    (x * 2).sum().backward()
    cleared.remove()
    return seen, errors, x.grad


def test_post_accumulate_grad_hook_behaves_as_pytorchs():
    seen, errors, grad = post_hook_story(tr)
    assert seen == [("a", [2.0, 2.0, 2.0]), ("b", True), ("a", [5.0, 5.0, 5.0]), ("b", True),
                    ("b", True), ("b", True), ("b", True), ("b", True)]
    assert errors == [True, True, True] and grad is None
    torch = pytest.importorskip("torch")
    assert post_hook_story(torch) == (seen, errors, None)


def test_register_hook_returns_a_handle_that_removes_it():
    x = tr.ones(2, requires_grad=True)
    y = x * 2
    calls = []
    handles = [x.register_hook(lambda g: calls.append("leaf")), y.register_hook(lambda g: calls.append("y"))]
    y.sum().backward(retain_graph=True)
    for h in handles:
        h.remove()
    y.sum().backward()
    assert calls == ["y", "leaf"]


# ---- WALK: the backward walk is replaceable (the course runs the learner's) --------------
def test_backward_calls_the_walk_in_force_with_root_seed_and_retain_graph():
    from tinyres.engine import WALK, walk

    calls = []

    def recording_walk(root, seed, retain_graph):
        calls.append((root, seed.tolist(), retain_graph))
        walk(root, seed, retain_graph)

    x = tr.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    token = WALK.set(recording_walk)
    try:
        y.backward(tr.tensor([1.0, 0.5]), retain_graph=True)
    finally:
        WALK.reset(token)
    assert calls == [(y, [1.0, 0.5], True)]
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    y.sum().backward()  # the engine's walk again: nothing recorded
    assert len(calls) == 1 and WALK.get() is walk
