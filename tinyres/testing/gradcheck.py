r"""Finite-difference gradient checking.

For a function ``f`` and a random upstream gradient ``v`` (never all ones, which
would hide a gradient sent to the wrong element of a sum), the scalar
``L(x) = sum(v * f(x))`` has the analytic gradient that ``backward`` computes, and
the numeric one from central differences, one element at a time:

.. math::  \frac{\partial L}{\partial x_j} \approx \frac{L(x + \epsilon e_j) - L(x - \epsilon e_j)}{2\epsilon}

Central differences are accurate to O(eps^2); in float64 with eps = 1e-6 that leaves
about 1e-10 of truncation and rounding error on well-scaled inputs. Keep inputs away
from kinks (ReLU at 0, ties in max-pool): there the function is not differentiable
and the two sides disagree by design.

>>> import tinyres as tr
>>> x = tr.randn(3, 4, dtype=tr.float64, requires_grad=True)
>>> tr.gradcheck(lambda t: (t * t).sum(dim=1), (x,))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyres.engine import Tensor, no_grad

_UPSTREAM_STREAM = 0x6772616463  # "gradc"


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message says where."""


@dataclass
class InputCheck:
    """The comparison for one input: the relative error and its worst element."""

    input_index: int
    relative_error: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    passed: bool


def _as_tuple(outputs: Any) -> tuple[Tensor, ...]:
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return tuple(o for o in outputs if isinstance(o, Tensor) and o.dtype.kind == "f")


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max|a - n| / max(1e-8, max|a| + max|n|)``: scale-free, and 0 for exact agreement."""
    if analytic.size == 0:
        return 0.0
    scale = max(1e-8, float(np.max(np.abs(analytic)) + np.max(np.abs(numeric))))
    return float(np.max(np.abs(analytic - numeric)) / scale)


def check_gradients(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> list[InputCheck]:
    """Compare ``backward`` with central differences for every input that requires grad.

    Returns one ``InputCheck`` per such input; an element passes when
    ``|a - n| <= atol + rtol * |n|``. Every element is perturbed, so keep inputs small.
    """
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck needs float64 inputs for accurate differences; "
                f"input {i} is {inputs[i].dtype}"
            )
    # A stream of its own: callers often draw their inputs from default_rng(seed), and an
    # upstream gradient equal to the input can hide a bug (e.g. batch norm's dx ~ 0).
    rng = np.random.default_rng([seed, _UPSTREAM_STREAM])
    outputs = _as_tuple(fn(*inputs))
    if not outputs:
        raise ValueError("gradcheck: the function returned no floating-point tensor")
    upstream = [rng.standard_normal(o.shape) for o in outputs]

    # Analytic: one backward of sum(v * f(x)), leaving the callers' .grad untouched.
    previous = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    loss = None
    for out, v in zip(outputs, upstream):
        if out.requires_grad:
            term = (out * Tensor(v.astype(out.dtype))).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()
    analytic = [
        inputs[i].grad._data.copy() if inputs[i].grad is not None else np.zeros(inputs[i].shape)
        for i in checked
    ]
    for i, grad in zip(checked, previous):
        inputs[i].grad = grad

    def scalar_loss() -> float:
        with no_grad():
            outs = _as_tuple(fn(*inputs))
        return float(sum(np.sum(o._data * v) for o, v in zip(outs, upstream)))

    results = []
    for i, a in zip(checked, analytic):
        x = inputs[i]._data
        numeric = np.zeros(x.shape)
        for j in np.ndindex(x.shape):
            original = x[j]
            x[j] = original + eps
            plus = scalar_loss()
            x[j] = original - eps
            minus = scalar_loss()
            x[j] = original
            numeric[j] = (plus - minus) / (2 * eps)
        excess = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
        worst = np.unravel_index(int(np.argmax(excess)), x.shape) if x.size else ()
        results.append(
            InputCheck(
                input_index=i,
                relative_error=relative_error(a, numeric),
                worst_index=tuple(int(k) for k in worst),
                analytic=float(a[worst]) if x.size else 0.0,
                numeric=float(numeric[worst]) if x.size else 0.0,
                passed=bool(x.size == 0 or excess.max() <= 0),
            )
        )
    return results


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Return True if ``backward`` matches central differences for every input.

    Otherwise raise ``GradcheckError`` naming the input, its worst element and the
    analytic and numeric values there.
    """
    for check in check_gradients(fn, inputs, eps, atol, rtol, seed):
        if not check.passed:
            raise GradcheckError(
                f"gradient mismatch for input {check.input_index} at index "
                f"{check.worst_index}: analytic {check.analytic:.6g}, numeric "
                f"{check.numeric:.6g} (relative error {check.relative_error:.3g})"
            )
    return True
