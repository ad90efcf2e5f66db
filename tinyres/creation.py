"""Ways to make tensors, and the one random generator they draw from.

>>> import tinyres as tr
>>> tr.manual_seed(0)
>>> tr.zeros(2, 3).shape
tinyres.Size([2, 3])
>>> tr.tensor([1, 2]).dtype
dtype('int64')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres.engine import Tensor, _as_array
from tinyres.plumbing import check_device

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind ``randn``, ``rand`` and the ``nn.init`` functions.

    PyTorch's range: a 64-bit integer, signed or not (a negative seed counts from 2**64)."""
    global _rng
    value = int(seed)  # as torch.manual_seed: a float or a NumPy integer is taken as an int
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"manual_seed: expected an integer in -2**63..2**64-1, got {seed!r}")
    _rng = np.random.default_rng(value % 2**64)


def generator() -> np.random.Generator:
    """The shared NumPy generator (re-created by ``manual_seed``)."""
    return _rng


def _size(size: tuple) -> tuple[int, ...]:
    """Accept ``zeros(2, 3)`` and ``zeros((2, 3))`` alike."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for n in size:
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"sizes must be non-negative integers, got {size}")
    return tuple(int(n) for n in size)


def _float_dtype(dtype: Any) -> np.dtype:
    return float32 if dtype is None else np.dtype(dtype)


def _numbers(data: Any, dtype: Any) -> np.ndarray:
    """``data`` (numbers, or nested lists of them) as an array; refuse what PyTorch refuses,
    where NumPy would make a str or object array, or wrap an integer past 64 bits around."""
    if isinstance(data, (Tensor, np.ndarray, np.generic)):
        return _as_array(data, dtype)
    try:
        arr = np.asarray(data)
    except ValueError as err:  # NumPy: "... inhomogeneous shape after 1 dimensions ..."
        raise ValueError(f"tensor: expected nested lists of equal lengths at every level, got ragged ones "
                         f"({str(err).split('. ', 1)[-1]})") from None
    if arr.dtype.kind in "OSUV":
        values = arr.reshape(-1).tolist()
        odd = [v for v in values if not isinstance(v, (bool, int, float))]
        if not odd:  # only numbers, so an int too large for int64
            if dtype is not None and np.dtype(dtype).kind == "f":
                return np.asarray(data, dtype=dtype)
            bad = next(v for v in values if isinstance(v, int) and not -(2**63) <= v < 2**63)
            raise ValueError(f"tensor: expected integers in -2**63..2**63-1 (int64), got {bad}")
        error = TypeError if isinstance(odd[0], (str, bytes)) else RuntimeError  # as PyTorch
        raise error(f"tensor: expected numbers (or nested lists of them), got {type(odd[0]).__name__} "
                    f"{odd[0]!r:.40}")
    if arr.dtype == np.uint64 and (dtype is None or np.dtype(dtype).kind in "iu"):
        raise ValueError(f"tensor: expected integers in -2**63..2**63-1 (int64), got {arr.max()}")
    return _as_array(data, dtype)  # again from data: Python floats become float32


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (Python floats become float32)."""
    check_device(device)
    return Tensor(np.array(_numbers(data, dtype), copy=True), requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (its dtype is kept)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    check_device(device)
    return Tensor(np.zeros(_size(size), _float_dtype(dtype)), requires_grad=requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    check_device(device)
    return Tensor(np.ones(_size(size), _float_dtype(dtype)), requires_grad=requires_grad)


def full(size: Any, fill_value: float, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    check_device(device)
    return Tensor(
        np.full(_size((size,)), fill_value, _float_dtype(dtype)), requires_grad=requires_grad
    )


def zeros_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    check_device(device)
    return Tensor(np.zeros(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    check_device(device)
    return Tensor(np.ones(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def randn(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Samples from N(0, 1)."""
    check_device(device)
    data = _rng.standard_normal(_size(size)).astype(_float_dtype(dtype))
    return Tensor(data, requires_grad=requires_grad)


def rand(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Samples from U[0, 1)."""
    check_device(device)
    data = _rng.random(_size(size)).astype(_float_dtype(dtype))
    return Tensor(data, requires_grad=requires_grad)


def randint(low: int, high: int, size: Any) -> Tensor:
    """Integers drawn uniformly from [low, high)."""
    return Tensor(_rng.integers(low, high, _size((size,))).astype(int64))


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None,
           device: Any = None) -> Tensor:
    """Like ``torch.arange``: integers give int64, any float gives float32."""
    check_device(device)
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = int64 if is_int else float32
    return Tensor(np.arange(start, end, step, dtype=dtype))
