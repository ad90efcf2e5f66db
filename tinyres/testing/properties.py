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
5. **saved tensors**: after forward, each input (and the output) is changed in place,
   then backward runs. If backward reads that tensor (changing it behind autograd's
   back, through ``.data``, changes the gradient), the visible change must raise
   PyTorch's RuntimeError, or the gradient would be silently wrong: it was not saved
   (``ctx.save_for_backward``; ``saved_inputs``/``saves_output`` for the engine's ops).
   Saving more than backward reads is allowed: PyTorch's own conv, clamp and max-pool
   save their input and raise on a change their backward would survive, and tinyres's
   ops raise where PyTorch does.

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
from tinyres.testing.gradcheck import check_gradients, relative_error

_UPSTREAM_STREAM = 0x636865636B  # "check": its own stream, apart from the caller's draws
# Two changes a backward that reads the tensor cannot both miss: a sign flip with a
# scale (moves every kink's side and every magnitude) and a shift (moves zeros).
_CHANGES: tuple[tuple[str, Callable[[Tensor], Any]], ...] = (
    ("multiplied by -1.5", lambda t: t.mul_(-1.5)),
    ("shifted by 0.75", lambda t: t.add_(0.75)),
)


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
) -> None:
    """Run the five properties above on ``fn(*inputs)``; raise ``OpCheckError`` on the first failure.

    ``eps``, ``atol`` and ``rtol`` are ``gradcheck``'s; every element of every input is
    perturbed, so keep inputs small (a few dozen elements). Non-Tensor arguments and
    Tensors that do not require grad are passed through unchanged.
    """
    inputs = tuple(inputs)
    wanted = _differentiable(inputs)
    if not wanted:
        raise ValueError("check_op: no input is a Tensor that requires grad, so there is nothing to check")
    _check_as_given(fn, inputs, wanted, seed)
    _check_against_differences(fn, inputs, eps, atol, rtol, seed)
    if any(inputs[i].dtype == np.float32 for i in wanted):
        _check_float32(fn, inputs, wanted, float32_tolerance, seed)
    check_saved_tensors(fn, *inputs, seed=seed)


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


def check_saved_tensors(fn: Callable[..., Tensor], *inputs: Any, seed: int = 0) -> None:
    """Property 5 alone: every tensor that backward reads is saved.

    Run in float64. For each differentiable input and the output: the gradient after a
    hidden change (through ``.data``, which autograd does not see) against the gradient
    of an untouched run says whether backward reads it; if it does, a visible change
    (``mul_``) must raise PyTorch's RuntimeError.
    """
    inputs = _leaves(tuple(inputs), np.float64)
    wanted = _differentiable(inputs)

    def run(target: int | None, change: Callable[[Tensor], Any] | None, hidden: bool):
        leaves = _leaves(inputs, None)
        fed = tuple(t * 1 if i in wanted else t for i, t in enumerate(leaves))  # non-leaves: changeable
        out = _output(fn, fed)
        victim = out if target is None else fed[target]
        if change is not None:
            try:
                change(victim.data if hidden else victim)
            except (RuntimeError, ValueError):
                return None  # the in-place op itself is refused (a broadcast view is read-only)
        with np.errstate(all="ignore"):
            _backward(out, _upstream(out, seed))
        return [np.array(leaves[i].grad._data) if leaves[i].grad is not None else None for i in wanted]

    with np.errstate(all="ignore"):
        untouched = run(None, None, hidden=False)
    for target in [*wanted, None]:
        name = "the output" if target is None else f"input {target}"
        hidden = [(how, run(target, change, True)) for how, change in _CHANGES]
        if any(grads is None for _, grads in hidden):
            continue
        read_when = [how for how, grads in hidden if not _same(grads, untouched)]
        if not read_when:
            continue
        try:
            if run(target, _CHANGES[0][1], hidden=False) is None:
                continue
        except RuntimeError as error:
            # PyTorch's error, or tinyres refusing a view whose base changed: either way no
            # silently wrong gradient.
            if "modified by an inplace operation" in str(error) or "base was modified" in str(error):
                continue
            raise
        raise OpCheckError(
            f"saved tensors: backward reads {name} (the gradient changed when {name} was "
            f"{read_when[0]} after forward), but changing it in place did not raise PyTorch's "
            "RuntimeError: the gradient is silently wrong. Save it with ctx.save_for_backward "
            "(an engine op: declare it in saved_inputs / saves_output)"
        )


def _same(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> bool:
    return all(
        (x is None) == (y is None) and (x is None or np.allclose(x, y, rtol=1e-9, atol=1e-12))
        for x, y in zip(a, b)
    )
