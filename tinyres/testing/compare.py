"""``assert_close``: ``torch.testing.assert_close`` for tinyres Tensors, arrays and numbers.

Close means ``|actual - expected| <= atol + rtol * |expected|`` element by element, with
tolerances chosen by dtype when neither is given (PyTorch's table: float32 rtol 1.3e-6,
atol 1e-5; float64 rtol 1e-7, atol 1e-7; integers and bools exact). Shapes and, unless
``check_dtype=False``, dtypes must be equal. The failure message is PyTorch's, with the
worst element's expected and actual values added.

>>> import tinyres as tr
>>> assert_close(tr.tensor([1.0, 2.0]), tr.tensor([1.0, 2.0 + 1e-7]))
>>> assert_close(tr.tensor([1.0, 2.0, 3.0]), tr.tensor([1.0, 2.5, 3.0]))
Traceback (most recent call last):
...
AssertionError: Tensor-likes are not close!
<BLANKLINE>
Mismatched elements: 1 / 3 (33.3%)
Greatest absolute difference: 0.5 at index (1,) (up to 1e-05 allowed)
Greatest relative difference: 0.2 at index (1,) (up to 1.3e-06 allowed)
At index (1,): expected 2.5, got 2
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Tensor

# torch.testing's default tolerances (rtol, atol) by dtype.
DEFAULT_TOLERANCES: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.float16): (1e-3, 1e-5),
    np.dtype(np.float32): (1.3e-6, 1e-5),
    np.dtype(np.float64): (1e-7, 1e-7),
}


def _array(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def _torch_dtype_name(dtype: np.dtype) -> str:
    return f"tinyres.{dtype.name}"


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    check_dtype: bool = True,
    msg: str | None = None,
) -> None:
    """Raise ``AssertionError`` unless ``actual`` and ``expected`` are close (see the module)."""
    if (rtol is None) != (atol is None):
        missing = "atol" if atol is None else "rtol"
        raise ValueError(f"Both 'rtol' and 'atol' must be either specified or omitted, but got no {missing}.")
    a, e = _array(actual), _array(expected)
    if a.shape != e.shape:
        raise AssertionError(
            msg or f"The values for attribute 'shape' do not match: {a.shape} != {e.shape}."
        )
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(
            msg or "The values for attribute 'dtype' do not match: "
            f"{_torch_dtype_name(a.dtype)} != {_torch_dtype_name(e.dtype)}."
        )
    if rtol is None:
        # With check_dtype=False and two dtypes, the looser of the two defaults, as PyTorch.
        pairs = [DEFAULT_TOLERANCES.get(d, (0.0, 0.0)) for d in (a.dtype, e.dtype)]
        rtol, atol = max(p[0] for p in pairs), max(p[1] for p in pairs)
    exact = rtol == 0 and atol == 0
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(a64 - e64)
        ok = diff <= atol + rtol * np.abs(e64)
        ok |= a64 == e64  # equal infinities
        if equal_nan:
            ok |= np.isnan(a64) & np.isnan(e64)
        if ok.all():
            return
        relative = diff / np.abs(e64)
    bad = int((~ok).sum())
    # NaN counts as the greatest difference, so a NaN element is the one reported.
    worst_abs = _worst(diff, ~ok)
    worst_rel = _worst(relative, ~ok)
    lines = [
        f"Tensor-likes are not {'equal' if exact else 'close'}!",
        "",
        f"Mismatched elements: {bad} / {a.size} ({100 * bad / a.size:.1f}%)",
        f"Greatest absolute difference: {_num(diff[worst_abs])} at index {worst_abs}"
        + ("" if exact else f" (up to {_num(atol)} allowed)"),
        f"Greatest relative difference: {_num(relative[worst_rel])} at index {worst_rel}"
        + ("" if exact else f" (up to {_num(rtol)} allowed)"),
        f"At index {worst_abs}: expected {_num(e[worst_abs])}, got {_num(a[worst_abs])}",
    ]
    text = "\n".join(lines)
    raise AssertionError(f"{msg}\n\n{text}" if msg else text)


def _worst(values: np.ndarray, mismatched: np.ndarray) -> tuple[int, ...]:
    """The index of the greatest value among the mismatched elements (NaN first)."""
    ranked = np.where(mismatched, np.nan_to_num(values, nan=np.inf, posinf=np.inf), -1.0)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(ranked)), values.shape))


def _num(x: Any) -> str:
    return f"{float(x):.8g}" if np.asarray(x).dtype.kind == "f" or isinstance(x, float) else str(x)
