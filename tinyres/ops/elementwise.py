"""Element-wise operations with NumPy broadcasting.

Each ``backward`` returns gradients of the broadcast output's shape; the engine
(``tinyres.engine.unbroadcast``) reduces them to each input's shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyres import kernels
from tinyres.engine import Function, Tensor
from tinyres.pieces import learner


class Add(Function):
    """z = x + y;  dz/dx = 1, dz/dy = 1."""

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x + y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return grad, grad


class Sub(Function):
    """z = x - y;  dz/dx = 1, dz/dy = -1."""

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x - y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return grad, -grad


class Mul(Function):
    """z = x * y;  dz/dx = y, dz/dy = x."""

    saved_inputs = ((1,), (0,))

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        self.x, self.y = x, y
        return x * y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return grad * self.y, grad * self.x


class Div(Function):
    """z = x / y;  dz/dx = 1/y, dz/dy = -x/y^2."""

    saved_inputs = ((1,), (0, 1))

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        self.x, self.y = x, y
        return x / y

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return grad / self.y, -grad * self.x / (self.y * self.y)


class Pow(Function):
    """z = x ** y;  dz/dx = y x^(y-1), dz/dy = z ln x (where x > 0)."""

    saved_inputs, saves_output = ((0, 1), (0, 1)), True

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        self.x, self.y = x, y
        self.z = np.power(x, y)
        return self.z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx = grad * self.y * np.power(self.x, self.y - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            dy = np.where(self.x > 0, grad * self.z * np.log(np.where(self.x > 0, self.x, 1)), 0)
        return dx, dy


class Neg(Function):
    """z = -x."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return -x

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (-grad,)


class Exp(Function):
    """z = e^x;  dz/dx = z."""

    saves_output = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.z = np.exp(x)
        return self.z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad * self.z,)


class Log(Function):
    """z = ln x;  dz/dx = 1/x."""

    saved_inputs = ((0,),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return np.log(x)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad / self.x,)


class Sqrt(Function):
    """z = sqrt(x);  dz/dx = 1 / (2 z)."""

    saves_output = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.z = np.sqrt(x)
        return self.z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad / (2 * self.z),)


class Abs(Function):
    """z = |x|;  dz/dx = sign(x) (0 at the kink)."""

    saved_inputs = ((0,),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return np.abs(x)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad * np.sign(self.x),)


class Relu(Function):
    """z = max(x, 0);  dz/dx = 1 where x > 0, else 0 (``tinyres.kernels.relu_reference``).

    The kernels are chosen at forward (``kernels.select``) and reused by backward.
    """

    saves_output = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.kernels = kernels.select("relu")
        z, self.for_backward = self.kernels.forward(x)
        return z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (self.kernels.backward(grad, self.for_backward),)


class LeakyRelu(Function):
    """z = x where x > 0, else slope * x;  dz/dx = 1 where x > 0, else slope (PyTorch's choice at 0)."""

    def forward(self, x: np.ndarray, *, slope: float) -> np.ndarray:
        self.positive, self.slope = x > 0, x.dtype.type(slope)
        return np.where(self.positive, x, x * self.slope)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (np.where(self.positive, grad, grad * self.slope),)


class Sigmoid(Function):
    """z = 1 / (1 + e^-x);  dz/dx = z (1 - z)."""

    saves_output = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        # exp of a negative number only, so large |x| cannot overflow.
        e = np.exp(-np.abs(x))
        self.z = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad * self.z * (1 - self.z),)


class Tanh(Function):
    """z = tanh x;  dz/dx = 1 - z^2."""

    saves_output = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.z = np.tanh(x)
        return self.z

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad * (1 - self.z * self.z),)


class Cast(Function):
    """z = x converted to another float dtype; the gradient is converted back."""

    def forward(self, x: np.ndarray, *, dtype: Any) -> np.ndarray:
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad.astype(self.dtype),)


class Clone(Function):
    """z = a copy of x."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad,)


class Copy(Function):
    """z = y broadcast to x's shape and dtype (``x.copy_(y)``, ``x.fill_(v)``);  dz/dx = 0, dz/dy = 1."""

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.broadcast_to(y, x.shape).astype(x.dtype)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(grad), grad


def operands(x: Any, y: Any) -> tuple[Any, Any]:
    """Give a Python number the dtype of its tensor partner (as PyTorch does), and
    refuse mixing float32 and float64 tensors, which would silently upcast."""
    if isinstance(x, Tensor) and isinstance(y, Tensor):
        if x.dtype != y.dtype and x.dtype.kind == "f" and y.dtype.kind == "f":
            raise TypeError(
                f"operands have different float dtypes: {x.dtype} and {y.dtype}; "
                "convert one with .to(dtype) first"
            )
        return x, y
    if isinstance(x, Tensor):
        return x, _scalar_like(y, x)
    if isinstance(y, Tensor):
        return _scalar_like(x, y), y
    return Tensor(x), Tensor(y)


def _scalar_like(value: Any, like: Tensor) -> Any:
    arr = np.asarray(value)
    if like.dtype.kind == "f" and arr.dtype.kind in "iuf":
        return arr.astype(like.dtype)
    return arr


def add(x: Any, y: Any) -> Tensor:
    return Add.apply(*operands(x, y))


def sub(x: Any, y: Any) -> Tensor:
    return Sub.apply(*operands(x, y))


def mul(x: Any, y: Any) -> Tensor:
    return Mul.apply(*operands(x, y))


def div(x: Any, y: Any) -> Tensor:
    return Div.apply(*operands(x, y))


def pow(x: Any, y: Any) -> Tensor:
    return Pow.apply(*operands(x, y))


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def exp(x: Tensor) -> Tensor:
    return Exp.apply(x)


def log(x: Tensor) -> Tensor:
    return Log.apply(x)


def sqrt(x: Tensor) -> Tensor:
    return Sqrt.apply(x)


def abs(x: Tensor) -> Tensor:
    return Abs.apply(x)


def relu(x: Tensor) -> Tensor:
    return Relu.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else ``negative_slope`` * x, as ``torch.nn.functional.leaky_relu``."""
    if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
    return LeakyRelu.apply(x, slope=float(negative_slope))


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (``torch.nn.functional.silu``), composed: its backward is the product
    rule over ``Mul`` and ``Sigmoid``, so it needs no ``Function`` of its own."""
    return x * sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    return (learner("Tanh") or Tanh).apply(x)  # the learner's ex02 inside tinyres.course.mine


def cast(x: Tensor, dtype: Any) -> Tensor:
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    if dtype.kind != "f":
        return Tensor(x._data.astype(dtype))
    return Cast.apply(x, dtype=dtype)


def clone(x: Tensor) -> Tensor:
    return Clone.apply(x)
