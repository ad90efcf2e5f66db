"""The checks of the autograd exercises (lessons 1 to 4): backward, Tanh, unbroadcast,
MatMul, the numeric gradient and softmax cross-entropy.

The truth is always the library: ``Tensor.backward``, ``tinyres.engine.unbroadcast``,
``tinyres.gradcheck.check_gradients`` and ``tinyres.nn.functional.cross_entropy``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from hypothesis import strategies as st

import tinyres as tr
from tinyres.engine import Tensor, unbroadcast
from tinyres.grading.core import Exercise, MismatchError, Property, call, compare, describe, for_examples
from tinyres.nn import functional as F
from tinyres.testing.gradcheck import check_gradients
from tinyres.testing.strategies import LAYOUTS, broadcastable_pairs, make_array, shapes

# A few seeds only: the shapes, layouts and graphs vary the cases, and a small range lets
# hypothesis shrink a failure quickly.
SEEDS = st.integers(0, 3)

# ---- ex01: backward in topological order ------------------------------------------------------

# A random graph: leaves of three shapes that broadcast together, then ops whose operands
# are drawn from everything made so far, so tensors are reused (the case a naive walk gets wrong).
LEAF_SHAPES = ((2, 3), (3,), (2, 1))
BINARY = {"+": tr.Tensor.__add__, "*": tr.Tensor.__mul__, "-": tr.Tensor.__sub__}
graphs = st.tuples(
    SEEDS,
    st.lists(
        st.tuples(st.sampled_from(["+", "*", "-", "tanh"]), st.integers(0, 99), st.integers(0, 99)),
        min_size=1, max_size=8,
    ),
)


# Reuse that a pre-order walk gets wrong: t0 = a + a; t1 = t0 + a, and a diamond through tanh.
REUSE = ((0, [("+", 0, 0), ("+", 3, 0)]), (1, [("*", 0, 1), ("tanh", 3, 0), ("*", 3, 4)]))


def _build(graph) -> tuple[Tensor, list[Tensor], str]:
    """The graph's root (a sum) and leaves, on fresh float64 tensors, and a description."""
    seed, ops = graph
    rng = np.random.default_rng(seed)
    leaves = [Tensor(rng.uniform(-1, 1, s), requires_grad=True) for s in LEAF_SHAPES]
    nodes, names, words = list(leaves), ["a", "b", "c"], []
    for op, i, j in ops:
        x, y = nodes[i % len(nodes)], nodes[j % len(nodes)]
        nx, ny = names[i % len(nodes)], names[j % len(nodes)]
        nodes.append(x.tanh() if op == "tanh" else BINARY[op](x, y))
        names.append(f"t{len(words)}")
        words.append(f"{names[-1]} = tanh({nx})" if op == "tanh" else f"{names[-1]} = {nx} {op} {ny}")
    root = nodes[-1].sum()
    leaf_words = ", ".join(f"{n} {s}" for n, s in zip("abc", LEAF_SHAPES))
    return root, leaves, f"leaves {leaf_words}; {'; '.join(words)}; root = {names[-1]}.sum()"


def _reachable(root: Tensor) -> set[int]:
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.grad_fn is not None:
            stack.extend(t for t in node.grad_fn.inputs if isinstance(t, Tensor) and t.requires_grad)
    return seen


def _check_order(mod: ModuleType) -> None:
    def body(graph):
        root, _, example = _build(graph)
        order = call(mod.topological_order, root, example=example)
        ids = [id(t) for t in order]
        if len(set(ids)) != len(ids):
            raise MismatchError("a tensor appears more than once in the order", example)
        if set(ids) != _reachable(root):
            raise MismatchError(
                f"the order holds {len(ids)} tensors; the graph has {len(_reachable(root))}", example
            )
        if ids[0] != id(root):
            raise MismatchError("the root is not first", example)
        position = {i: k for k, i in enumerate(ids)}
        for node in order:
            for inp in node.grad_fn.inputs if node.grad_fn else ():
                if isinstance(inp, Tensor) and position.get(id(inp), len(ids)) < position[id(node)]:
                    raise MismatchError(
                        f"a tensor made by {type(node.grad_fn).__name__} (position {position[id(node)]}) "
                        f"comes after its input (position {position[id(inp)]})",
                        example,
                        ("that input would pass its gradient on before receiving this consumer's share",),
                    )

    for_examples(graphs, body, REUSE)


def _check_backward(mod: ModuleType) -> None:
    def body(graph):
        root, leaves, example = _build(graph)
        root.backward()
        truth = [leaf.grad for leaf in leaves]
        root, leaves, _ = _build(graph)
        call(mod.backward, root, example=example)
        for name, leaf, want in zip("abc", leaves, truth):
            want = np.zeros(leaf.shape) if want is None else want.numpy()
            got = np.zeros(leaf.shape) if leaf.grad is None else np.asarray(leaf.grad)
            compare(f"the gradient of leaf {name}", want, got, example)

    for_examples(graphs, body, REUSE)


def _check_deep_chain(mod: ModuleType) -> None:
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    example = "x (1,), 10,000 multiplications by 1.0001, then .sum()"
    call(mod.backward, y.sum(), example=example)
    compare("the gradient of x", [1.0001**10_000], x.grad, example, rtol=1e-9)


EX01 = Exercise(
    "ex01", "01", "backward in topological order", "ex01_backward.py",
    (
        Property("topological_order: each tensor once, root first, every tensor before its inputs",
                 _check_order,
                 "a tensor may be put in the order only after every tensor that uses it: add a node "
                 "after all its inputs are done (post-order) and reverse the list"),
        Property("backward: every leaf's gradient equals Tensor.backward's, on graphs that reuse tensors",
                 _check_backward,
                 "accumulate (+=) the gradients of a tensor used twice, unbroadcast each to its input's "
                 "shape, and pass a gradient on only when it is complete"),
        Property("backward works on a chain of 10,000 ops (no recursion)", _check_deep_chain,
                 "Python allows about 1,000 nested calls: walk the graph with an explicit stack"),
    ),
)

# ---- ex02: Tanh --------------------------------------------------------------------------------

array_cases = st.tuples(shapes(1, 3), st.sampled_from(LAYOUTS), SEEDS)


def _check_tanh_forward(mod: ModuleType) -> None:
    def body(case):
        x = make_array(*case)
        example = describe(x=x)
        compare("tanh(x)", np.tanh(x), call(mod.Tanh.apply, Tensor(x), example=example).numpy(), example)

    for_examples(array_cases, body)


def gradcheck_or_raise(fn, inputs: tuple[Tensor, ...], names: str, example: str) -> None:
    """Raise MismatchError naming the worst element of the first input whose gradient is off."""
    for check in call(check_gradients, fn, inputs, example=example):
        if not check.passed:
            name = names[check.input_index]
            raise MismatchError(
                f"d/d{name} differs from central differences (relative error {check.relative_error:.2g})",
                example,
                (f"worst index {check.worst_index}: numeric {check.numeric:.6g}, "
                 f"yours {check.analytic:.6g}",),
            )


def _check_tanh_gradient(mod: ModuleType) -> None:
    def body(case):
        x = make_array(*case)
        example = describe(x=x)
        leaf = Tensor(x, requires_grad=True)
        gradcheck_or_raise(lambda t: call(mod.Tanh.apply, t, example=example), (leaf,), "x", example)

    for_examples(array_cases, body)


EX02 = Exercise(
    "ex02", "01", "the Tanh function", "ex02_tanh.py",
    (
        Property("forward equals np.tanh (any shape, any memory layout)", _check_tanh_forward,
                 "return np.tanh(x) itself, not a copy of x"),
        Property("backward matches central differences (float64)", _check_tanh_gradient,
                 "d tanh(x)/dx = 1 - tanh(x)^2: square the saved output z, not the input x"),
    ),
)

# ---- ex03: unbroadcast ------------------------------------------------------------------------

pair_cases = st.tuples(broadcastable_pairs(), st.booleans(), SEEDS)


def _unbroadcast_case(case):
    (s1, s2), first, seed = case
    out = np.broadcast_shapes(s1, s2)
    grad = np.random.default_rng(seed).standard_normal(out)
    shape = s1 if first else s2
    return grad, shape, f"grad {out}, shape {shape}"


def _check_unbroadcast_shape(mod: ModuleType) -> None:
    def body(case):
        grad, shape, example = _unbroadcast_case(case)
        got = np.asarray(call(mod.unbroadcast, grad.copy(), shape, example=example))
        if got.shape != tuple(shape):
            raise MismatchError(f"returned shape {got.shape}, expected {tuple(shape)}", example)

    for_examples(pair_cases, body)


def _check_unbroadcast_values(mod: ModuleType) -> None:
    def body(case):
        grad, shape, example = _unbroadcast_case(case)
        compare("unbroadcast(grad, shape)", unbroadcast(grad, shape),
                call(mod.unbroadcast, grad.copy(), shape, example=example), example)

    for_examples(pair_cases, body)


EX03 = Exercise(
    "ex03", "02", "unbroadcast", "ex03_unbroadcast.py",
    (
        Property("returns an array of the input's shape", _check_unbroadcast_shape,
                 "sum the leading axes broadcasting added, then, keeping them (keepdims=True), the "
                 "axes where the input has size 1"),
        Property("each element is the sum of the gradient over its broadcast copies",
                 _check_unbroadcast_values,
                 "sum, don't average or pick one copy: every copy of an element received gradient"),
    ),
)

# ---- ex04: MatMul -------------------------------------------------------------------------------

matmul_cases = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
                         st.sampled_from(LAYOUTS), SEEDS)


def _matmul_inputs(case):
    n, k, m, layout, seed = case
    x, y = make_array((n, k), layout, seed), make_array((k, m), layout, seed + 1)
    return x, y, describe(X=x, Y=y)


def _check_matmul_shapes(mod: ModuleType) -> None:
    def body(case):
        x, y, example = _matmul_inputs(case)
        fn = mod.MatMul()
        z = call(fn.forward, x, y, example=example)
        compare("X @ Y", x @ y, z, example)
        g = np.random.default_rng(0).standard_normal(np.shape(z))
        dx, dy = call(fn.backward, g, example=example)
        for name, want, got in (("dL/dX", x.shape, np.shape(dx)), ("dL/dY", y.shape, np.shape(dy))):
            if want != got:
                raise MismatchError(f"{name} has shape {got}, expected the input's shape {want}", example)

    for_examples(matmul_cases, body)


def _check_matmul_gradient(mod: ModuleType) -> None:
    def body(case):
        x, y, example = _matmul_inputs(case)
        leaves = (Tensor(x, requires_grad=True), Tensor(y, requires_grad=True))
        gradcheck_or_raise(lambda a, b: call(mod.MatMul.apply, a, b, example=example), leaves, "XY", example)

    for_examples(matmul_cases, body)


EX04 = Exercise(
    "ex04", "02", "the MatMul function", "ex04_matmul.py",
    (
        Property("forward is X @ Y, and each gradient has its input's shape", _check_matmul_shapes,
                 "dL/dX = G @ Y.T (n, m)(m, k) and dL/dY = X.T @ G: a missing transpose gives the "
                 "wrong shape"),
        Property("backward matches central differences (float64), square shapes included",
                 _check_matmul_gradient,
                 "with square matrices a missing or misplaced transpose still has the right shape "
                 "but the wrong values"),
    ),
)

# ---- ex05: the numeric gradient -------------------------------------------------------------------


def _smooth(x: np.ndarray) -> np.ndarray:
    """f(x) = tanh(x) * sum(x): every output depends on every input."""
    return np.tanh(x) * x.sum()


def _smooth_gradient(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """d/dx sum(v * tanh(x) * S) with S = sum(x): v (1 - tanh^2 x) S + sum(v tanh x)."""
    t = np.tanh(x)
    return v * (1 - t * t) * x.sum() + np.sum(v * t)


def _check_numeric_values(mod: ModuleType) -> None:
    def body(case):
        x, v = make_array(*case), make_array(case[0], "c", case[2] + 1)
        example = describe(x=x, f="tanh(x) * x.sum()", eps=1e-6)
        x_before = x.copy()
        got = call(mod.numerical_gradient, _smooth, x, v, 1e-6, example=example)
        compare("the numeric gradient", _smooth_gradient(x_before, v), got, example, rtol=1e-5, atol=1e-7)
        if not np.array_equal(x, x_before):
            raise MismatchError("x was changed by numerical_gradient", example,
                                ("restore each element after perturbing it (or work on a copy)",))

    for_examples(array_cases, body)


def _check_numeric_order(mod: ModuleType) -> None:
    def body(case):
        shape, _, seed = case
        x = make_array(shape, "c", seed, low=0.5, high=2.0)
        v = make_array(shape, "c", seed + 1, low=0.5, high=2.0)
        example = describe(x=x, f="x**3", eps=1e-3)
        got = call(mod.numerical_gradient, lambda a: a**3, x, v, 1e-3, example=example)
        # Central differences are off by eps^2 f'''/6 = 1e-6 per unit of v; one-sided ones by ~3x eps.
        compare("the numeric gradient", 3 * x**2 * v, got, example, rtol=1e-5, atol=0)

    for_examples(array_cases, body)


EX05 = Exercise(
    "ex05", "03", "the numeric gradient (central differences)", "ex05_numerical_gradient.py",
    (
        Property("equals the analytic gradient of a smooth function, and leaves x unchanged",
                 _check_numeric_values,
                 "L is sum(upstream * f(x)), a scalar: perturb x[j] by +eps and -eps, divide the "
                 "difference by 2 eps, restore x[j]"),
        Property("error of order eps^2: on x**3 with eps = 1e-3 within 1e-5 relative",
                 _check_numeric_order,
                 "a one-sided difference (f(x + eps) - f(x)) / eps is only accurate to order eps: "
                 "use (f(x + eps) - f(x - eps)) / (2 eps)"),
    ),
)

# ---- ex06: softmax cross-entropy ------------------------------------------------------------------

logit_cases = st.tuples(st.integers(1, 5), st.integers(2, 5), SEEDS,
                        st.sampled_from([1.0, 10.0]))


def _ce_case(case):
    n, c, seed, scale = case
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((n, c))
    target = rng.integers(0, c, n)
    return logits, target, f"logits ({n}, {c}) of scale {scale:g}, target {target.tolist()}"


def _ce_truth(logits, target):
    x = Tensor(logits.copy(), requires_grad=True)
    loss = F.cross_entropy(x, Tensor(target))
    loss.backward()
    return loss.item(), x.grad.numpy()


def _check_ce_loss(mod: ModuleType) -> None:
    def body(case):
        logits, target, example = _ce_case(case)
        loss, _ = call(mod.softmax_cross_entropy, logits.copy(), target, example=example)
        compare("the loss", _ce_truth(logits, target)[0], loss, example)

    for_examples(logit_cases, body)


def _check_ce_gradient(mod: ModuleType) -> None:
    def body(case):
        logits, target, example = _ce_case(case)
        _, grad = call(mod.softmax_cross_entropy, logits.copy(), target, example=example)
        truth = _ce_truth(logits, target)[1]
        compare("dloss/dlogits", truth, grad, example)

    for_examples(logit_cases, body)


def _check_ce_batch_scale(mod: ModuleType) -> None:
    logits, target, example = _ce_case((4, 3, 7, 1.0))
    _, grad = call(mod.softmax_cross_entropy, logits.copy(), target, example=example)
    ratio = np.sum(np.abs(np.asarray(grad))) / np.sum(np.abs(_ce_truth(logits, target)[1]))
    if not np.isclose(ratio, 1.0, rtol=1e-6):
        raise MismatchError(f"your gradient is {ratio:.3g} times the mean loss's gradient", example,
                            ("batch of N = 4: a ratio of 4 is the gradient of the sum, not the mean",))


def _check_ce_large(mod: ModuleType) -> None:
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    target = np.array([0, 2])
    example = "logits [[1e4, 0, -1e4], [0, 1e4, 1e4]], target [0, 2]"
    with np.errstate(all="ignore"):
        loss, grad = call(mod.softmax_cross_entropy, logits.copy(), target, example=example)
    want_loss, want_grad = _ce_truth(logits, target)
    compare("the loss", want_loss, loss, example)
    compare("dloss/dlogits", want_grad, grad, example)


EX06 = Exercise(
    "ex06", "04", "softmax cross-entropy: loss and gradient", "ex06_softmax_cross_entropy.py",
    (
        Property("the loss equals tinyres's cross_entropy (mean over the batch)", _check_ce_loss,
                 "loss = mean over rows of -log softmax(row)[target]; use log-sum-exp for log softmax"),
        Property("the gradient equals autograd's", _check_ce_gradient,
                 "dloss/dlogits = (softmax - onehot(target)) / N"),
        Property("the gradient is the mean's, not the sum's (scales with 1/N)", _check_ce_batch_scale,
                 "the loss is a mean over N rows, so its gradient is divided by N too"),
        Property("finite and exact for logits of 1e4 (no overflow)", _check_ce_large,
                 "exp(1e4) is inf: subtract each row's maximum before exponentiating"),
    ),
)

EXERCISES = (EX01, EX02, EX03, EX04, EX05, EX06)
