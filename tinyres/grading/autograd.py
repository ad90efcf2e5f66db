"""The checks of the autograd exercises (lessons 1 to 4): backward, Tanh, unbroadcast,
MatMul, the numeric gradient and softmax cross-entropy.

The truth is always the library: ``Tensor.backward``, ``tinyres.engine.unbroadcast``,
``tinyres.testing.gradcheck.check_gradients`` and ``tinyres.nn.functional.cross_entropy``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from hypothesis import strategies as st

import tinyres as tr
from tinyres.engine import Function, Tensor, unbroadcast
from tinyres.grading.core import (
    Exercise,
    InPlaceError,
    MismatchError,
    Property,
    call,
    cause,
    compare,
    describe,
    float32_accurate,
    for_examples,
    inputs_unchanged,
    keeps_dtype,
    magnitudes,
    within_float32,
)
from tinyres.nn import functional as F
from tinyres.testing.gradcheck import check_gradients
from tinyres.testing.strategies import LAYOUTS, broadcastable_pairs, make_array, shapes

# A few seeds only: the shapes, layouts and graphs vary the cases, and a small range lets
# hypothesis shrink a failure quickly.
SEEDS = st.integers(0, 3)

# ---- ex01: backward in topological order ------------------------------------------------------

# A random graph: leaves of three shapes that broadcast together, then ops whose operands
# are drawn from everything made so far, so tensors are reused (the case a naive walk gets
# wrong), and in-place additions (`t += u`), which give one Tensor object a new grad_fn:
# a walk keyed by tensor instead of by op loses the gradient of the tensor's old value.
LEAF_SHAPES = ((2, 3), (3,), (2, 1))
BINARY = {"+": tr.Tensor.__add__, "*": tr.Tensor.__mul__, "-": tr.Tensor.__sub__}
OPS = ["+", "*", "-", "tanh", "+="]
graphs = st.tuples(
    SEEDS,
    st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 99), st.integers(0, 99)), min_size=1, max_size=8),
)
graphs_any_dtype = st.tuples(graphs, st.sampled_from([np.float32, np.float64]))


# Reuse that a pre-order walk gets wrong: t0 = a + a; t1 = t0 + a, and a diamond through tanh;
# lesson 1's in-place example, `out = a * b; out += a`.
REUSE = ((0, [("+", 0, 0), ("+", 3, 0)]), (1, [("*", 0, 1), ("tanh", 3, 0), ("*", 3, 4)]),
         (2, [("*", 0, 1), ("+=", 0, 0)]))


def _build(graph, dtype=np.float64, values=None) -> tuple[Tensor, list[Tensor], str]:
    """The graph's root (a sum) and leaves, on fresh tensors of ``dtype``, and a description.

    ``+=`` adds in place into the newest tensor when an op made it and no op has read it
    yet (and tanh, which saves its output, did not make it); otherwise it is a plain +.
    """
    seed, ops = graph
    rng = np.random.default_rng(seed)
    values = values or dtype  # the dtype the leaves' values are rounded to (float32 for the accuracy check)
    leaves = [Tensor(rng.uniform(-1, 1, s).astype(values).astype(dtype), requires_grad=True)
              for s in LEAF_SHAPES]
    nodes, names, words, fresh = list(leaves), ["a", "b", "c"], [], False
    for op, i, j in ops:
        x, y = nodes[i % len(nodes)], nodes[j % len(nodes)]
        nx, ny = names[i % len(nodes)], names[j % len(nodes)]
        if op == "+=" and fresh and np.broadcast_shapes(nodes[-1].shape, y.shape) == nodes[-1].shape:
            nodes[-1] += y  # the same Tensor object, a new grad_fn
            words.append(f"{names[-1]} += {ny}")
            fresh = False
            continue
        op = "+" if op == "+=" else op
        nodes.append(x.tanh() if op == "tanh" else BINARY[op](x, y))
        fresh = op != "tanh"
        names.append(f"t{len(names) - 3}")
        words.append(f"{names[-1]} = tanh({nx})" if op == "tanh" else f"{names[-1]} = {nx} {op} {ny}")
    root = nodes[-1].sum()
    leaf_words = ", ".join(f"{n} {s}" for n, s in zip("abc", LEAF_SHAPES))
    kind = "" if dtype == np.float64 else f" {np.dtype(dtype)}"
    return root, leaves, f"leaves{kind} {leaf_words}; {'; '.join(words)}; root = {names[-1]}.sum()"


def _node(t: Tensor):
    return t if t.grad_fn is None else t.grad_fn


def _parents(node) -> list:
    return [p for p in node.parents if p is not None] if isinstance(node, Function) else []


def _reachable(root: Tensor) -> set[int]:
    seen, stack = set(), [_node(root)]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(_parents(node))
    return seen


def _check_order(mod: ModuleType, what: str) -> None:
    def body(graph):
        root, _, example = _build(graph)
        order = call(mod.topological_order, root, example=example)
        ids = [id(t) for t in order]
        if what == "nodes":
            if len(set(ids)) != len(ids):
                raise MismatchError("a node appears more than once in the order", example)
            if set(ids) != _reachable(root):
                tensors = sum(isinstance(t, Tensor) and t.grad_fn is not None for t in order)
                raise MismatchError(
                    f"the order holds {len(ids)} nodes; the graph has {len(_reachable(root))} "
                    "(ops and leaves)",
                    example, (f"{tensors} of yours are tensors made by an op: the graph's nodes are the ops "
                              "(grad_fn) and the leaf tensors, reached through grad_fn.parents",),
                )
            if ids[0] != id(_node(root)):
                raise MismatchError("root.grad_fn is not first", example)
            return
        position = {i: k for k, i in enumerate(ids)}
        for node in order:
            for parent in _parents(node):
                if id(parent) in position and position[id(parent)] < position[id(node)]:
                    raise MismatchError(
                        f"{type(node).__name__} (position {position[id(node)]}) comes after its input's "
                        f"node (position {position[id(parent)]})", example,
                        ("that input would pass its gradient on before receiving this consumer's share",),
                    )

    for_examples(graphs, body, REUSE)


def _leaf_grads(leaves, example: str = "") -> list[np.ndarray]:
    for leaf in leaves:
        if leaf.grad is not None and not isinstance(leaf.grad, Tensor):
            raise MismatchError(f"a leaf's .grad is a {type(leaf.grad).__name__}, not a Tensor", example,
                                hint="a leaf's .grad is a Tensor, as in PyTorch: leaf.grad = Tensor(array)",
                                decisive=True)
    return [np.zeros(leaf.shape) if leaf.grad is None else np.asarray(leaf.grad.numpy(), np.float64)
            for leaf in leaves]


def _truth(graph) -> list[np.ndarray]:
    root, leaves, _ = _build(graph)
    root.backward()
    return _leaf_grads(leaves)


def _check_backward(mod: ModuleType) -> None:
    def body(graph):
        truth = _truth(graph)
        root, leaves, example = _build(graph)
        call(mod.backward, root, example=example)
        for name, want, got in zip("abc", truth, _leaf_grads(leaves, example)):
            compare(f"the gradient of leaf {name}", want, got, example)

    for_examples(graphs, body, REUSE)


def _check_accumulates(mod: ModuleType) -> None:
    def body(graph):
        truth = _truth(graph)
        root, leaves, example = _build(graph)
        earlier = [np.random.default_rng(k).uniform(-1, 1, leaf.shape) for k, leaf in enumerate(leaves)]
        for leaf, g in zip(leaves, earlier):
            leaf.grad = Tensor(g.copy())
        call(mod.backward, root, example=example + "; every leaf already has a .grad")
        call(mod.backward, root, example=example + "; every leaf already has a .grad")
        for name, want, had, got in zip("abc", truth, earlier, _leaf_grads(leaves, example)):
            compare(f"leaf {name}'s .grad after two backward calls", had + 2 * want, got,
                    example + "; every leaf already has a .grad; backward called twice",)
        # Fresh leaves, backward twice: the first .grad a leaf gets must be its own array (a
        # gradient array can be shared by two inputs, or be a read-only broadcast view).
        root, leaves, example = _build(graph)
        call(mod.backward, root, example=example + "; backward called twice")
        call(mod.backward, root, example=example + "; backward called twice")
        for name, want, got in zip("abc", truth, _leaf_grads(leaves, example)):
            compare(f"leaf {name}'s .grad after two backward calls", 2 * want, got,
                    example + "; fresh leaves; backward called twice")

    for_examples(graphs, body, REUSE[:1])


def _check_inplace_example(mod: ModuleType) -> None:
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    out = x * 3
    out += x
    example = "x = [1., 2.] (requires grad); out = x * 3; out += x; backward(out.sum())"
    call(mod.backward, out.sum(), example=example)
    compare("x.grad", [4.0, 4.0], _leaf_grads([x], example)[0], example, rtol=0, atol=0)


def _check_deep_chain(mod: ModuleType) -> None:
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    example = "x (1,), 10,000 multiplications by 1.0001, then .sum()"
    call(mod.backward, y.sum(), example=example)
    compare("the gradient of x", [1.0001**10_000], x.grad, example, rtol=1e-9)


def _check_float32_graph(mod: ModuleType) -> None:
    """The learner's float32 backward against the engine's float64 one on the same float32 values. The
    values and the gradients stay near 1 (leaves in [-1, 1], tanh, at most 8 ops): the scale is
    1 + the largest |gradient|, and n the ops plus the 6 copies a broadcast sum adds up."""

    def body(graph):
        root, leaves, example = _build(graph, np.float64, values=np.float32)
        root.backward()
        truth = _leaf_grads(leaves)
        root, leaves, example = _build(graph, np.float32)
        call(mod.backward, root, example=example)
        scale = 1 + max(float(np.abs(t).max()) for t in truth)
        for name, want, got in zip("abc", truth, _leaf_grads(leaves, example)):
            within_float32(f"the gradient of leaf {name}", got, want, scale, len(graph[1]) + 6, example)

    for_examples(graphs, body)


def _invoke_backward(mod: ModuleType, case):
    graph, dtype = case
    root, leaves, example = _build(graph, dtype)
    return (lambda r, _values: mod.backward(r)), (root, [t.detach().numpy() for t in leaves]), example, dtype


def _leaves_of(root: Tensor) -> list[Tensor]:
    """The leaf tensors ``root`` depends on (that require grad)."""
    seen, stack, leaves = set(), [_node(root)], []
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(_parents(node))
            if isinstance(node, Tensor):
                leaves.append(node)
    return leaves


EX01 = Exercise(
    "ex01", "01", "backward in topological order", "ex01_backward.py",
    (
        Property("topological_order holds each node (op or leaf) once, root's op first",
                 lambda mod: _check_order(mod, "nodes"),
                 "the nodes are root.grad_fn, each op's grad_fn.parents (ops, or leaf tensors), once each",
                 key="nodes"),
        Property("topological_order puts every node before its parents", lambda mod: _check_order(mod,
                                                                                                  "order"),
                 "a node may be put in the order only after every node that uses it: add a node "
                 "after all its parents are done (post-order) and reverse the list", key="order"),
        Property("backward: every leaf's gradient equals Tensor.backward's, on graphs that reuse tensors "
                 "and add in place", _check_backward,
                 "accumulate (+=) the gradients of a node used twice, unbroadcast each to its input's "
                 "shape, and pass a gradient on only when it is complete", key="values"),
        Property("by op: out = x * 3; out += x gives x.grad [4, 4], as in the engine", _check_inplace_example,
                 "after `out += x` the Tensor object `out` has a new grad_fn, and its old value is "
                 "another node: key the gradients by node (grad_fn, or the leaf) and follow "
                 "grad_fn.parents, not grad_fn.inputs", key="by op"),
        Property(".grad accumulates: two backward calls, and a leaf that already has a gradient",
                 _check_accumulates,
                 "PyTorch adds into .grad (that is why training loops call zero_grad): "
                 "leaf.grad = old + new, not new", key="accumulate"),
        Property("backward works on a chain of 10,000 ops (no recursion)", _check_deep_chain,
                 "Python allows about 1,000 nested calls: walk the graph with an explicit stack", key="deep"),
        keeps_dtype(graphs_any_dtype, _invoke_backward,
                    lambda result, args: {f"the .grad of the leaf of shape {leaf.shape}": leaf.grad
                                          for leaf in _leaves_of(args[0]) if leaf.grad is not None}),
        inputs_unchanged(graphs_any_dtype, _invoke_backward, "root, the leaves' values"),
        Property("float32 results as accurate as float32 allows (against the float64 truth)",
                 _check_float32_graph,
                 "a gradient loses float32 precision on the way: keep each gradient in its tensor's dtype "
                 "(no float16 step)", key="float32 accuracy"),
    ),
    causes=(
        cause("order", "values", "by op", "accumulate", text="an order that is not post-order: a node used "
              "twice passes its gradient on before its second consumer sends its share; append a node after "
              "its parents (post-order) and reverse"),
        cause("order", "values", text="an order that is not post-order: a node used twice passes its "
              "gradient on before its second consumer sends its share; append a node after its parents "
              "(post-order) and reverse"),
        cause("nodes", "values", "by op", text="a walk keyed by tensor: key the order and the gradients by "
              "node (grad_fn, or the leaf itself) and follow grad_fn.parents, not the tensors"),
        cause("values", "by op", text="a walk keyed by tensor: `t += u` gives the Tensor object t a new "
              "grad_fn, so t's old value is a different node; key the gradients by node (grad_fn, or the "
              "leaf itself) and follow grad_fn.parents"),
        cause("values", "by op", "accumulate", text="a node used twice keeps only the last gradient sent "
              "to it: add each consumer's share to what the node has collected (+=), do not replace it"),
        cause("dtype", text="the seed gradient (the root's 1) or a gradient on the way has another dtype "
              "than its tensor: make the seed np.ones(root.shape, dtype=root.dtype) and cast each input's "
              "gradient to the input's dtype"),
    ),
)


# ---- calling a learner's Function directly, for the dtype and unchanged-inputs properties ---------

DTYPES = st.sampled_from([np.float32, np.float64])


def forward_backward(cls):
    """A function (inputs..., grad) -> (output, *input gradients) running ``cls`` by hand.

    The forward's output belongs to the graph (the next op reads it, and a Function may save
    it for its backward): a backward that writes into it raises InPlaceError.
    """

    def run(*arrays):
        fn = cls()
        out = fn.forward(*arrays[:-1])
        before = np.array(out, copy=True)
        grads = fn.backward(arrays[-1])
        if isinstance(out, np.ndarray) and not np.array_equal(before, out, equal_nan=True):
            raise InPlaceError(
                "your backward changed the forward's output in place", "",
                ("the output is the next layer's input, and what you saved for backward: a second "
                 "backward would read the changed values",),
                hint="backward wrote into an array it saved (z *= z, z -= ...): the saved output is the "
                "forward's result too; compute z * z into a new array")
        return (out, *grads)

    return run


def named_outputs(*names: str):
    """``outputs`` for ``keeps_dtype``: the result's items under ``names`` (a lone result if one)."""
    return lambda result, args: dict(zip(names, result if len(names) > 1 else (result,)))

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


def _invoke_tanh(mod: ModuleType, case):
    (shape, layout, seed), dtype = case
    x, g = make_array(shape, layout, seed, dtype), make_array(shape, "c", seed + 1, dtype)
    return forward_backward(mod.Tanh), (x, g), describe(x=x) + f", {np.dtype(dtype)}", dtype


EX02 = Exercise(
    "ex02", "01", "the Tanh function", "ex02_tanh.py",
    (
        Property("forward equals np.tanh (any shape, any memory layout)", _check_tanh_forward,
                 "return np.tanh(x) itself, not a copy of x", key="forward"),
        Property("backward matches central differences (float64)", _check_tanh_gradient,
                 "d tanh(x)/dx = 1 - tanh(x)^2: square the saved output z, not the input x", key="gradient"),
        keeps_dtype(st.tuples(array_cases, DTYPES), _invoke_tanh, named_outputs("tanh(x)", "dL/dx")),
        inputs_unchanged(st.tuples(array_cases, DTYPES), _invoke_tanh, "x, grad"),
        # tanh and 1 - z^2 are within a few ulps of |tanh x| and of |grad|: no sum, n = 1.
        float32_accurate(array_cases, _invoke_tanh, named_outputs("tanh(x)", "dL/dx"), "ex02_tanh.py",
                         size=lambda args: 1,
                         scale=lambda run, args, case: {"tanh(x)": np.abs(np.tanh(args[0])),
                                                        "dL/dx": np.abs(args[1])}),
    ),
    causes=(
        cause("gradient", "inputs", text="the forward wrote its result into x (np.tanh(x, out=x), "
                                         "x[...] = ): "
              "x is the caller's array, and the backward then reads a changed x; return a new array"),
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


def _invoke_unbroadcast(mod: ModuleType, case):
    case, dtype = case
    grad, shape, example = _unbroadcast_case(case)
    return mod.unbroadcast, (grad.astype(dtype), shape), example + f", {np.dtype(dtype)}", dtype


EX03 = Exercise(
    "ex03", "02", "unbroadcast", "ex03_unbroadcast.py",
    (
        Property("returns an array of the input's shape", _check_unbroadcast_shape,
                 "sum the leading axes broadcasting added, then, keeping them (keepdims=True), the "
                 "axes where the input has size 1", key="shape"),
        Property("each element is the sum of the gradient over its broadcast copies",
                 _check_unbroadcast_values,
                 "sum, don't average or pick one copy: every copy of an element received gradient",
                 key="values"),
        keeps_dtype(st.tuples(pair_cases, DTYPES), _invoke_unbroadcast,
                              named_outputs("unbroadcast(grad, shape)")),
        inputs_unchanged(st.tuples(pair_cases, DTYPES), _invoke_unbroadcast, "grad, shape"),
        float32_accurate(pair_cases, _invoke_unbroadcast, named_outputs("unbroadcast(grad, shape)"),
                         "ex03_unbroadcast.py",
                         size=lambda args: args[0].size // max(1, int(np.prod(args[1]))),  # copies summed
                         scale=magnitudes(0)),
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


def _invoke_matmul(mod: ModuleType, case):
    case, dtype = case
    x, y, example = _matmul_inputs(case)
    g = np.random.default_rng(case[-1]).standard_normal((x.shape[0], y.shape[1])).astype(dtype)
    args = (x.astype(dtype), y.astype(dtype), g)
    return forward_backward(mod.MatMul), args, example + f", {np.dtype(dtype)}", dtype


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
        keeps_dtype(st.tuples(matmul_cases, DTYPES), _invoke_matmul, named_outputs("X @ Y", "dL/dX",
                                                                                   "dL/dY")),
        inputs_unchanged(st.tuples(matmul_cases, DTYPES), _invoke_matmul, "X, Y, grad"),
        # Each output is a dot product of at most max(n, k, m) terms; its scale |X| @ |Y| (and so on).
        float32_accurate(matmul_cases, _invoke_matmul, named_outputs("X @ Y", "dL/dX", "dL/dY"),
                         "ex04_matmul.py", size=lambda args: max(args[0].shape + args[1].shape),
                         scale=magnitudes()),
    ),
    causes=(
        cause("float32 accuracy", text="float32 precision lost, though float64 is right: an intermediate in "
              "float16 (or another cast down) keeps about 3 digits; compute in the inputs' own dtype"),
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
        if np.shape(got) == x.shape and not np.any(got) and np.any(_smooth_gradient(x_before, v)):
            raise MismatchError("the numeric gradient is 0 everywhere", example,
                                ("f never saw your perturbation",),
                                hint="the perturbation never reached f: x.reshape(-1) or x.flatten() of a "
                                "non-contiguous x is a copy, and writing into it leaves x as it was; index "
                                "x itself (for j in np.ndindex(x.shape))")
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
        # Exactly: ((x + e)^3 - (x - e)^3) / 2e = 3x^2 + e^2, to rounding (1e-11 here). A result
        # without the e^2 = 1e-6 used another step than the eps passed in.
        try:
            compare("the numeric gradient", (3 * x**2 + 1e-6) * v, got, example, rtol=1e-9, atol=1e-9)
        except MismatchError as m:
            raise MismatchError(m.what + " (central differences with eps = 1e-3 give 3x^2 + eps^2 exactly)",
                                m.example, m.details,
                                hint="the result does not follow the eps passed in: step by the eps "
                                "argument, not a value of your own") from None

    for_examples(array_cases, body)


def _invoke_numeric(mod: ModuleType, case):
    (shape, layout, seed), dtype = case
    x, v = make_array(shape, layout, seed, dtype), make_array(shape, "c", seed + 1, dtype)
    # eps = 1e-2: in float32 a smaller step is lost in the rounding of x + eps.
    fn = lambda f, a, u: mod.numerical_gradient(f, a, u, 1e-2)  # noqa: E731
    return fn, (_smooth, x, v), describe(x=x, f="tanh(x) * x.sum()", eps=1e-2) + f", {np.dtype(dtype)}", dtype


EX05 = Exercise(
    "ex05", "03", "the numeric gradient (central differences)", "ex05_numerical_gradient.py",
    (
        Property("equals the analytic gradient of a smooth function, and leaves x unchanged",
                 _check_numeric_values,
                 "L is sum(upstream * f(x)), a scalar: perturb x[j] by +eps and -eps, divide the "
                 "difference by 2 eps, restore x[j]", key="values"),
        Property("error of order eps^2: on x**3 with eps = 1e-3 within 1e-5 relative",
                 _check_numeric_order,
                 "a one-sided difference (f(x + eps) - f(x)) / eps is only accurate to order eps: "
                 "use (f(x + eps) - f(x - eps)) / (2 eps)"),
        keeps_dtype(st.tuples(array_cases, DTYPES), _invoke_numeric, named_outputs("the numeric gradient")),
        inputs_unchanged(st.tuples(array_cases, DTYPES), _invoke_numeric, "f, x, upstream"),
    ),
    causes=(
        cause("values", "inputs", text="x is not put back exactly: x[j] += eps, then -= 2 eps, then += eps "
              "rounds to a nearby number; keep the original value and assign it back (or work on a copy)"),
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


# The hard cases of a stable softmax, drawn: rows shifted far apart (one maximum for the
# whole batch underflows every other row), each with its largest logit at a drawn position;
# and a confidently wrong class (its probability underflows to 0, so log(softmax) is -inf
# where log-softmax is a finite -800).
@st.composite
def far_apart_rows(draw):
    n, c = draw(st.integers(2, 4)), draw(st.integers(2, 5))
    offsets = draw(st.lists(st.sampled_from([0.0, 1e3, -1e3, 3e2]), min_size=n, max_size=n))
    peaks = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return n, c, draw(SEEDS), tuple(offsets), tuple(peaks)


def _rows_case(case):
    n, c, seed, offsets, peaks = case
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c)) + np.array(offsets)[:, None]
    logits[np.arange(n), peaks] += 5.0  # each row's extreme, anywhere in the row
    target = rng.integers(0, c, n)
    return logits, target, (f"logits ({n}, {c}), row offsets {list(offsets)}, each row's largest at "
                            f"{list(peaks)}, target {target.tolist()}")


@st.composite
def wrong_class(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    return n, c, draw(SEEDS), draw(st.integers(0, n - 1)), draw(st.sampled_from([800.0, 2000.0]))


def _wrong_case(case):
    n, c, seed, row, margin = case
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c))
    target = rng.integers(0, c, n)
    logits[row, target[row]] -= margin  # the model is sure of another class
    return logits, target, (f"logits ({n}, {c}), target {target.tolist()}; row {row}'s target logit is "
                            f"{margin:g} below the others")


def _ce_truth(logits, target):
    x = Tensor(logits.copy(), requires_grad=True)
    loss = F.cross_entropy(x, Tensor(target))
    loss.backward()
    return loss.item(), x.grad.numpy()


def _check_ce_hard(mod: ModuleType, draw, make) -> None:
    def body(case):
        logits, target, example = make(case)
        with np.errstate(all="ignore"):
            loss, grad = call(mod.softmax_cross_entropy, logits.copy(), target, example=example)
        want_loss, want_grad = _ce_truth(logits, target)
        compare("the loss", want_loss, loss, example)
        compare("dloss/dlogits", want_grad, grad, example)

    for_examples(draw, body)


def _invoke_ce(mod: ModuleType, case):
    case, dtype = case
    logits, target, example = _ce_case(case)
    return mod.softmax_cross_entropy, (logits.astype(dtype), target), example + f", {np.dtype(dtype)}", dtype


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
                 "loss = mean over rows of -log softmax(row)[target]; use log-sum-exp for log softmax",
                 key="loss"),
        Property("the gradient equals autograd's", _check_ce_gradient,
                 "dloss/dlogits = (softmax - onehot(target)) / N", key="gradient"),
        Property("the gradient is the mean's, not the sum's (scales with 1/N)", _check_ce_batch_scale,
                 "the loss is a mean over N rows, so its gradient is divided by N too", key="1/N"),
        Property("finite and exact for logits of 1e4 (no overflow)", _check_ce_large,
                 "exp(1e4) is inf: subtract each row's maximum before exponentiating", key="1e4"),
        Property("exact when the rows lie far apart (1e3) with their largest logit anywhere",
                 lambda mod: _check_ce_hard(mod, far_apart_rows(), _rows_case),
                 "subtract each row's own maximum (axis=1, keepdims=True): one maximum for the whole "
                 "batch leaves the other rows' exponentials at 0", key="rows"),
        Property("exact for a confidently wrong class (its probability underflows to 0)",
                 lambda mod: _check_ce_hard(mod, wrong_class(), _wrong_case),
                 "log(softmax) is log(0) = -inf when the target's probability underflows: compute "
                 "log-softmax as shifted - log(sum(exp(shifted))) and never take the log of a probability",
                 key="wrong class"),
        keeps_dtype(st.tuples(logit_cases, DTYPES), _invoke_ce,
                    lambda result, args: {"dloss/dlogits": result[1]}),
        inputs_unchanged(st.tuples(logit_cases, DTYPES), _invoke_ce, "logits, target"),
        # log-sum-exp of C logits: exp turns an absolute error u * |logit| into a relative one, so the
        # scale is the largest |logit| (the loss) and that times the largest |gradient| (1 / N).
        float32_accurate(logit_cases, _invoke_ce, lambda result, args: {"the loss": result[0],
                                                                        "dloss/dlogits": result[1]},
                         "ex06_softmax_cross_entropy.py", size=lambda args: args[0].shape[1],
                         scale=lambda run, args, case: {
                             "the loss": 1 + np.abs(args[0]).max(),
                             "dloss/dlogits": (1 + np.abs(args[0]).max()) / len(args[0])}),
    ),
    causes=(
        cause("loss", "gradient", "1/N", "rows", "wrong class", text="the loss is wrong even on ordinary "
              "logits: softmax normalises each row over its classes, so every max and sum runs along axis=1 "
              "(keepdims=True), and the loss picks each row's target"),
        cause("gradient", "1/N", text="the gradient of the sum, not of the mean: the loss is a mean over "
              "N rows, so divide the gradient by N too"),
        cause("1e4", "rows", text="no maximum subtracted: exp of a large logit overflows to inf; subtract "
              "each row's maximum before exponentiating"),
        cause("rows", text="one maximum for the whole batch: a row far below it has every exponential "
              "underflow to 0 and log(0) = -inf; subtract each row's own maximum (axis=1, keepdims=True)"),
        cause("wrong class", text="the log of an underflowed probability: exp(-800) is 0 in float64, so "
              "log(softmax) is -inf; compute log-softmax as shifted - log(sum(exp(shifted))) and take the "
              "loss from it"),
    ),
)

EXERCISES = (EX01, EX02, EX03, EX04, EX05, EX06)
