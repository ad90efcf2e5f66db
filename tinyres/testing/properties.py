r"""``check_op``: the op table's properties, for any function of Tensors.

``check_op(fn, *inputs)`` calls ``fn(*inputs)`` (a lambda, a built-in op, or a custom
``Function.apply``) and checks, for every floating input that requires grad:

1. **gradients**: ``backward`` against central differences in float64, under a random
   upstream gradient ``v`` (``tinyres.testing.gradcheck``);
2. **float32**: where an input is float32, the output and gradients against a float64
   truth (the same call on float64 copies), to a scale-free relative error
   ``max|a - t| / max|t|`` below ``float32_tolerance``;
3. **dtypes**: the output has its inputs' float dtype, each gradient its input's;
4. **inputs unchanged**: forward and backward leave every input's values alone;
5. **saved tensors**: after forward, each tensor of the graph (the output, each input,
   each intermediate result) is changed in place, then backward runs. If backward reads
   that tensor (changing it behind autograd's back, through ``.data``, changes the
   gradient), the visible change must raise PyTorch's RuntimeError, or the gradient would
   be silently wrong: it was not saved (``ctx.save_for_backward``;
   ``saved_inputs``/``saves_output`` for the engine's ops). Saving more than backward
   reads passes unless ``over_declared=True`` (PyTorch's own max-pool saves its input
   and reads only the indices); tinyres's op table turns it on for its own ops.

A failure raises ``OpCheckError`` (an ``AssertionError``) naming the property, so
inside a hypothesis ``@given`` test hypothesis shrinks the drawn inputs and reports the
smallest failing example.

>>> import tinyres as tr
>>> x = tr.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=tr.float64, requires_grad=True)
>>> check_op(lambda t: (t * t).sum(dim=0), x)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tinyres.engine import Tensor
from tinyres.grad_mode import no_grad
from tinyres.testing.gradcheck import check_gradients, relative_error

_UPSTREAM_STREAM = 0x636865636B  # "check": its own stream, apart from the caller's draws


class OpCheckError(AssertionError):
    """A property of ``check_op`` failed; the message names it and the values."""


def _differentiable(inputs: tuple[Any, ...]) -> list[int]:
    return [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]


def _leaves(inputs: tuple[Any, ...], dtype: Any | None) -> tuple[Any, ...]:
    """Fresh leaves with the inputs' values (cast to ``dtype`` if given): the caller's stay untouched."""
    return tuple(
        Tensor(t._data.astype(dtype or t.dtype), requires_grad=True)
        if isinstance(t, Tensor) and t.requires_grad else t
        for t in inputs
    )


def _output(fn: Callable[..., Any], inputs: tuple[Any, ...]) -> Tensor:
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise OpCheckError(f"check_op: the function must return one Tensor, got {type(out).__name__}")
    return out


def _upstream(out: Tensor, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, _UPSTREAM_STREAM]).standard_normal(out.shape)


def _backward(out: Tensor, upstream: np.ndarray) -> None:
    out.backward(Tensor(upstream.astype(out.dtype)))


def check_op(
    fn: Callable[..., Tensor],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    float32_tolerance: float = 1e-4,
    seed: int = 0,
    over_declared: bool = False,
) -> None:
    """Run the five properties above on ``fn(*inputs)``; raise ``OpCheckError`` on the first failure.

    ``eps``, ``atol`` and ``rtol`` are ``gradcheck``'s; every element of every input is
    perturbed, so keep inputs small (a few dozen elements). Non-Tensor arguments and
    Tensors that do not require grad are passed through unchanged. ``over_declared=True``
    also fails a saved tensor that backward never reads (``check_saved_tensors``).
    """
    inputs = tuple(inputs)
    wanted = _differentiable(inputs)
    if not wanted:
        raise ValueError("check_op: no input is a Tensor that requires grad, so there is nothing to check")
    _check_as_given(fn, inputs, wanted, seed)
    _check_against_differences(fn, inputs, eps, atol, rtol, seed)
    if any(inputs[i].dtype == np.float32 for i in wanted):
        _check_float32(fn, inputs, wanted, float32_tolerance, seed)
    check_saved_tensors(fn, *inputs, seed=seed, over_declared=over_declared)


def _check_as_given(fn: Callable[..., Any], inputs: tuple[Any, ...], wanted: list[int], seed: int) -> None:
    """Properties 3 and 4 on the caller's own tensors (their layouts), ``.grad`` restored after."""
    before = [np.array(t._data) if isinstance(t, Tensor) else None for t in inputs]
    grads = {i: inputs[i].grad for i in wanted}
    for i in wanted:
        inputs[i].grad = None
    try:
        out = _output(fn, inputs)
        dtypes = {inputs[i].dtype for i in wanted}
        if len(dtypes) == 1 and out.dtype != next(iter(dtypes)):
            raise OpCheckError(f"dtype: the inputs are {next(iter(dtypes))}, the output is {out.dtype}")
        _unchanged(inputs, before, "forward")
        if out.requires_grad:
            _backward(out, _upstream(out, seed))
        _unchanged(inputs, before, "backward")
        for i in wanted:
            g = inputs[i].grad
            if g is not None and (g.dtype != inputs[i].dtype or g.shape != inputs[i].shape):
                raise OpCheckError(
                    f"gradient of input {i}: expected {inputs[i].dtype} {tuple(inputs[i].shape)} "
                    f"(the input's), got {g.dtype} {tuple(g.shape)}"
                )
    finally:
        for i, g in grads.items():
            inputs[i].grad = g


def _unchanged(inputs: tuple[Any, ...], before: list[np.ndarray | None], during: str) -> None:
    for i, (t, b) in enumerate(zip(inputs, before)):
        if b is not None and not np.array_equal(t._data, b, equal_nan=True):
            where = tuple(int(k) for k in np.argwhere(~np.isclose(t._data, b, equal_nan=True))[0])
            raise OpCheckError(
                f"inputs unchanged: {during} changed input {i} at index {where} "
                f"(was {b[where]:.6g}, now {t._data[where]:.6g})"
            )


def _check_against_differences(
    fn: Callable[..., Any], inputs: tuple[Any, ...], eps: float, atol: float, rtol: float, seed: int
) -> None:
    for check in check_gradients(fn, _leaves(inputs, np.float64), eps, atol, rtol, seed):
        if not check.passed:
            raise OpCheckError(
                f"gradient of input {check.input_index} against central differences (float64): at index "
                f"{check.worst_index} backward gives {check.analytic:.6g}, the differences "
                f"{check.numeric:.6g} (relative error {check.relative_error:.3g})"
            )


def _grads_of(fn: Callable[..., Any], inputs: tuple[Any, ...], wanted: list[int], seed: int):
    out = _output(fn, inputs)
    _backward(out, _upstream(out, seed))
    return out.detach().numpy(), [inputs[i].grad for i in wanted]


def _check_float32(
    fn: Callable[..., Any], inputs: tuple[Any, ...], wanted: list[int], tolerance: float, seed: int
) -> None:
    out32, grads32 = _grads_of(fn, _leaves(inputs, None), wanted, seed)
    truth, grads64 = _grads_of(fn, _leaves(inputs, np.float64), wanted, seed)
    pairs = [("the output", out32, truth)] + [
        (f"the gradient of input {i}", g32, g64) for i, g32, g64 in zip(wanted, grads32, grads64)
        if g32 is not None and g64 is not None
    ]
    for what, got, want in pairs:
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        error = relative_error(got, want)
        if not error <= tolerance:
            raise OpCheckError(
                f"float32: {what} is {error:.3g} from its float64 truth (relative error "
                f"max|a - t| / max(|a| + |t|)), more than {tolerance:g}"
            )


def check_saved_tensors(
    fn: Callable[..., Tensor], *inputs: Any, seed: int = 0, over_declared: bool = False
) -> None:
    """Property 5 alone: every tensor that backward reads is saved (and, optionally, only those).

    Runs on float64 copies of the inputs (the caller's stay untouched). Every tensor of
    the graph is tried in turn: the output, each input (an integer one too: class labels)
    and each intermediate result a built-in op made. After forward that tensor is changed

    - behind autograd's back, through ``.data`` (as torch's ``.data`` does: no version
      change), in each of two ways (a float: multiplied by -1.5, shifted by 0.75; an
      integer: rolled by one place). If any changes the gradient, backward reads it;
    - visibly, in place under ``no_grad`` (as an optimizer step does), which must raise
      PyTorch's "modified by an inplace operation" RuntimeError wherever backward reads it,
      or the gradient would be silently wrong: it was not saved.

    With ``over_declared=True`` the converse fails too: the visible change raised, yet no
    hidden change altered the gradient, so the op saved a tensor its backward never reads
    (PyTorch's rule for its own ops: save only what backward reads). It is off by default
    because PyTorch's own ops break it (max-pool saves its input and reads only indices),
    so a user who mirrors their ``save_for_backward`` is not wrong; tinyres's op table
    turns it on (``tests/test_saved_declarations.py``).

    A tensor whose memory is read-only (a broadcast view) is skipped, as is one whose
    output is a view of it: tinyres refuses a backward from a view whose base changed,
    declarations aside. Raises ``OpCheckError`` listing every problem, one a line.
    """
    inputs = tuple(inputs)

    def run(target: int | None, change: _Change | None, hidden: bool) -> list[np.ndarray | None]:
        """The inputs' gradients after forward, a change of graph tensor ``target``, backward."""
        fed = _copies(inputs)
        out = _output(fn, fed)
        if target is not None and change is not None:
            _, victim = _graph_tensors(out, fed)[target]
            new = change[1](victim.detach().numpy())
            if hidden:
                victim.data.copy_(new)
            else:
                with no_grad():
                    victim.copy_(new)
        _backward(out, _upstream(out, seed))
        return [t.grad.numpy().copy() if isinstance(t, Tensor) and t.grad is not None else None
                for t in fed]

    fed = _copies(inputs)
    out = _output(fn, fed)
    if not out.requires_grad:
        return
    problems = []
    # A change may leave an op's domain (a negative base of pow): on purpose, so no warnings.
    with np.errstate(all="ignore"):
        untouched = run(None, None, hidden=False)
        for target, (name, t) in enumerate(_graph_tensors(out, fed)):
            changes = _FLOAT_CHANGES if t.dtype.kind == "f" else _INTEGER_CHANGES
            try:
                run(target, changes[0], hidden=False)
                raised = False
            except RuntimeError as error:
                if "base was modified" in str(error):
                    continue  # the output is a view of it: tinyres's view rule, not a declaration
                if "modified by an inplace operation" not in str(error):
                    raise
                raised = True
            if raised and not over_declared:
                continue
            read_when = [how for how, change in changes
                         if not _same(run(target, (how, change), hidden=True), untouched)]
            if read_when and not raised:
                problems.append(
                    f"saved tensors: backward reads {name} (the gradient changed when it was "
                    f"{read_when[0]} after forward), but changing it in place did not raise "
                    "PyTorch's RuntimeError: the gradient is silently wrong. Save it with "
                    "ctx.save_for_backward (an engine op: declare it in saved_inputs / saves_output)"
                )
            if raised and not read_when:
                problems.append(
                    f"saved tensors: changing {name} in place raised PyTorch's RuntimeError, yet "
                    "backward does not read it (no change of it altered the gradient): over-declared. "
                    "Save only what backward reads (an engine op: drop it from saved_inputs / saves_output)"
                )
    if problems:
        raise OpCheckError("\n".join(problems))


_Change = tuple[str, Callable[[np.ndarray], np.ndarray]]
# Two changes a backward that reads the tensor cannot both miss: a sign flip with a
# scale (moves every kink's side, order and magnitude) and a shift (moves zeros). Labels
# are rolled: a one-hot that reads them then picks other classes.
_FLOAT_CHANGES: tuple[_Change, ...] = (
    ("multiplied by -1.5", lambda a: a * -1.5),
    ("shifted by 0.75", lambda a: a + 0.75),
)
_INTEGER_CHANGES: tuple[_Change, ...] = (("rolled by one place", lambda a: np.roll(a, 1)),)


def _copies(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """Fresh tensors with the inputs' values, float64 where they require grad; others passed as given."""
    return tuple(
        Tensor(np.array(t._data, dtype=np.float64 if t.requires_grad else t.dtype),
               requires_grad=t.requires_grad)
        if isinstance(t, Tensor) else t
        for t in inputs
    )


def _graph_tensors(out: Tensor, inputs: tuple[Any, ...]) -> list[tuple[str, Tensor]]:
    """The output, the Tensor inputs and every float tensor an op of the graph consumed,
    each once and named, in an order that is the same for every run (the graph is built
    the same way). A read-only array (a broadcast view) is left out: it cannot be written."""
    found: dict[int, tuple[str, Tensor]] = {id(out): ("the output", out)}
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor):
            found.setdefault(id(t), (f"input {i}", t))
    todo, seen = [out.grad_fn], set()
    while todo:
        node = todo.pop(0)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for t in node.inputs:
            if isinstance(t, Tensor):
                if t.dtype.kind == "f":
                    found.setdefault(id(t), (f"the result of {type(t.grad_fn).__name__}", t))
                todo.append(t.grad_fn)
    return [(name, t) for name, t in found.values() if t._data.flags.writeable]


def _same(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> bool:
    return all(
        (x is None) == (y is None) and (x is None or np.allclose(x, y, rtol=1e-9, atol=1e-12))
        for x, y in zip(a, b)
    )
