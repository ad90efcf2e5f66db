"""The rest of ``Tensor``: operators, methods that forward to ``tinyres.ops``, in-place ops,
conversions and the plumbing PyTorch programs call.

``tinyres/engine.py`` defines ``Tensor`` with only what autograd needs, and must not
import ``tinyres.ops``: every op imports the engine. So the methods here are written in
the body of ``TensorMethods``, a class used only to hold them, and ``attach`` at the
end of this file copies each one onto ``Tensor``, once, when ``import tinyres`` imports
this module (any ``import tinyres.<anything>`` runs ``tinyres/__init__.py`` first, so no
program sees a ``Tensor`` without them). Why this and not a base class: ``class
Tensor(TensorMethods)`` in the engine would make the engine import this file, and this
file imports the ops, which import the engine (a cycle); a subclass ``Tensor`` here
would not be the class ``Function.apply`` builds. A name defined in both places is an
error, so nothing here can silently replace the engine's autograd.

Most methods are one line that calls the op of the same name: the op, its backward and
its checks live in ``tinyres.ops``, so there is one implementation of each.

>>> import tinyres as tr
>>> x = tr.tensor([1.0, -2.0])
>>> (x * 2 + 1).tolist(), (x > 0).tolist(), x.abs().argmax().item()
([3.0, -3.0], [True, False], 1)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tinyres import creation, ops
from tinyres.engine import Function, Tensor, _as_array
from tinyres.grad_mode import is_grad_enabled, no_grad
from tinyres.plumbing import Size, device, float_dtype_or_device, refuse_device, refuse_half


class TensorMethods:
    """Every ``Tensor`` method that is not autograd; ``attach`` below puts them on ``Tensor``."""

    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    # ---- operators (each is a Function in tinyres.ops) --------------------------------
    def __add__(self, other: Any) -> Tensor:
        return ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ops.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return ops.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ops.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ops.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.div(other, self)

    def __pow__(self, exponent: Any) -> Tensor:
        return ops.pow(self, exponent)

    def __rpow__(self, base: Any) -> Tensor:
        return ops.pow(base, self)

    def __matmul__(self, other: Any) -> Tensor:
        return ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return ops.matmul(other, self)

    def __neg__(self) -> Tensor:
        return ops.neg(self)

    def __getitem__(self, index: Any) -> Tensor:
        return ops.index(self, index)

    add, sub, mul, div = __add__, __sub__, __mul__, __truediv__

    # Comparisons give boolean tensors and are not differentiable (tinyres.ops.compare).
    def eq(self, other: Any) -> Tensor:
        return ops.eq(self, other)

    def ne(self, other: Any) -> Tensor:
        return ops.ne(self, other)

    def lt(self, other: Any) -> Tensor:
        return ops.lt(self, other)

    def le(self, other: Any) -> Tensor:
        return ops.le(self, other)

    def gt(self, other: Any) -> Tensor:
        return ops.gt(self, other)

    def ge(self, other: Any) -> Tensor:
        return ops.ge(self, other)

    __eq__, __ne__, __lt__, __le__, __gt__, __ge__ = eq, ne, lt, le, gt, ge  # type: ignore[assignment]

    def __hash__(self) -> int:
        return id(self)  # defining __eq__ would otherwise make tensors unhashable

    # ---- methods that forward to tinyres.ops -------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return ops.sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return ops.mean(self, dim, keepdim)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return ops.max(self, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return ops.min(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return ops.argmax(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return ops.argmin(self, dim, keepdim)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
        return ops.topk(self, k, dim, largest, sorted)

    def sort(self, dim: int = -1, descending: bool = False) -> Any:
        return ops.sort(self, dim, descending)

    def gather(self, dim: int, index: Tensor) -> Tensor:
        return ops.gather(self, dim, index)

    def var(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False, **kwargs: Any) -> Tensor:
        return ops.var(self, dim, unbiased, keepdim, **kwargs)

    def std(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False, **kwargs: Any) -> Tensor:
        return ops.std(self, dim, unbiased, keepdim, **kwargs)

    def exp(self) -> Tensor:
        return ops.exp(self)

    def log(self) -> Tensor:
        return ops.log(self)

    def sqrt(self) -> Tensor:
        return ops.sqrt(self)

    def abs(self) -> Tensor:
        return ops.abs(self)

    def relu(self) -> Tensor:
        return ops.relu(self)

    def sigmoid(self) -> Tensor:
        return ops.sigmoid(self)

    def tanh(self) -> Tensor:
        return ops.tanh(self)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        return ops.clamp(self, min, max)

    clip = clamp

    def softmax(self, dim: int) -> Tensor:
        return ops.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        return ops.log_softmax(self, dim)

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        return ops.masked_fill(self, mask, value)

    def where(self, condition: Any, other: Any) -> Tensor:
        return ops.where(condition, self, other)

    # ---- shape -------------------------------------------------------------------------
    def view(self, *shape: Any) -> Tensor:
        return ops.reshape(self, *shape)

    reshape = view

    def view_as(self, other: Tensor) -> Tensor:
        return ops.reshape(self, other.shape)

    reshape_as = view_as

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return ops.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return ops.unsqueeze(self, dim)

    def squeeze(self, dim: int | None = None) -> Tensor:
        return ops.squeeze(self, dim)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return ops.transpose(self, dim0, dim1)

    def permute(self, *dims: Any) -> Tensor:
        return ops.permute(self, *dims)

    def t(self) -> Tensor:
        return ops.t(self)

    @property
    def T(self) -> Tensor:
        return ops.permute(self, *reversed(range(self.ndim)))

    def expand(self, *sizes: Any) -> Tensor:
        return ops.expand(self, *sizes)

    def expand_as(self, other: Tensor) -> Tensor:
        return ops.expand(self, other.shape)

    def contiguous(self) -> Tensor:
        """Self if its array is C-ordered, else a C-ordered copy in the graph (as PyTorch)."""
        return self if self._data.flags.c_contiguous else ops.clone(self)

    def clone(self) -> Tensor:
        return ops.clone(self)

    # ---- in-place operations (PyTorch's trailing underscore; each bumps the version) ----
    # Each computes the op out of place and writes the result into this tensor's memory
    # (``_inplace``, after them); version counters then make a stale saved value an error.
    def add_(self, other: Any, *, alpha: float = 1) -> Tensor:
        return self._inplace(ops.elementwise.Add, _operand(self, other if alpha == 1 else other * alpha))

    def sub_(self, other: Any, *, alpha: float = 1) -> Tensor:
        return self._inplace(ops.elementwise.Sub, _operand(self, other if alpha == 1 else other * alpha))

    def mul_(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.Mul, _operand(self, other))

    def div_(self, other: Any) -> Tensor:
        return self._inplace(ops.elementwise.Div, _operand(self, other))

    __iadd__, __isub__, __imul__, __itruediv__ = add_, sub_, mul_, div_

    def copy_(self, src: Any) -> Tensor:
        source = src if isinstance(src, Tensor) else Tensor(_as_array(src, self.dtype))
        return self._inplace(ops.elementwise.Copy, source)

    def fill_(self, value: Any) -> Tensor:
        return self.copy_(value)

    def zero_(self) -> Tensor:
        return self.copy_(0)

    def clamp_(self, min: float | None = None, max: float | None = None) -> Tensor:
        lo, hi = ops.compare.clamp_bounds(min, max, "clamp_")
        return self._inplace(ops.compare.Clamp, lo=lo, hi=hi)

    def relu_(self) -> Tensor:
        return self._inplace(ops.elementwise.Relu)

    def __setitem__(self, index: Any, value: Any) -> None:
        array_index = ops.shape.as_index(index)
        value = value if isinstance(value, Tensor) else Tensor(_as_array(value, self.dtype))
        if is_grad_enabled() and (self.requires_grad or value.requires_grad):
            self._inplace(ops.shape.IndexPut, value, index=array_index)
            ops.shape.save_index(self.grad_fn, index)  # IndexPut's backward reads the index
        else:  # nothing to record: write straight into memory, no copy of the whole tensor
            self._data[array_index] = value._data
            self._version_counter.value += 1

    def _inplace(self, fn: type[Function], *args: Any, **options: Any) -> Tensor:
        """Compute ``fn(self, *args)`` and write it into this tensor's memory.

        When a graph is recorded, this tensor takes the new op as its ``grad_fn``; the
        op's inputs keep the old version's node, so consumers of the old value still
        send their gradient to it. An op whose backward reads its first input gets a
        copy of the old value, which the write would otherwise destroy.
        """
        recording = is_grad_enabled() and any(
            isinstance(a, Tensor) and a.requires_grad for a in (self, *args)
        )
        if recording:
            _refuse_inplace_in_graph(self)
        source = self._old_version() if recording and fn.saves_input(0, (self, *args)) else self
        result = fn.apply(source, *args, **options)
        if result.shape != self.shape:
            raise RuntimeError(
                f"output with shape {list(self.shape)} doesn't match the broadcast shape {list(result.shape)}"
            )
        if not np.can_cast(result.dtype, self.dtype, casting="same_kind"):
            raise RuntimeError(
                f"result type {result.dtype} can't be cast to the desired output type {self.dtype}"
            )
        self._data[...] = result._data
        self._version_counter.value += 1
        if recording:
            self._take_history(result)
        return self

    def _old_version(self) -> Tensor:
        """A copy of this tensor's value that stands for it in the graph (same grad_fn)."""
        old = Tensor(self._data.copy())
        old.grad_fn, old._requires_grad = self.grad_fn, self.requires_grad
        return old

    def _take_history(self, result: Tensor) -> None:
        """Make ``result``'s op this tensor's ``grad_fn``; what it saved of ``result`` is now us."""
        fn = result.grad_fn
        fn.saved = tuple(
            s._replace(counter=self._version_counter, version=self._version)
            if s.counter is result._version_counter else s
            for s in fn.saved
        )
        if self.grad_fn is not None and self.grad_fn.retained_by is self:
            self.grad_fn.retained_by, fn.retained_by = None, self
        self.grad_fn, self._requires_grad = fn, True

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        """Fill with N(mean, std^2) samples in place, outside the graph (``w.data.normal_(0, s)``)."""
        with no_grad():
            return self.copy_(creation.generator().normal(mean, std, self.shape))

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        """Fill with U[a, b) samples in place, outside the graph."""
        with no_grad():
            return self.copy_(creation.generator().uniform(a, b, self.shape))

    # ---- conversions ---------------------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def size(self, dim: int | None = None) -> Size | int:
        return Size(self._data.shape) if dim is None else self._data.shape[dim]

    def numel(self) -> int:
        return int(self._data.size)

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied), like ``torch.Tensor.numpy``."""
        if self.requires_grad:
            raise RuntimeError(
                "can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()"
            )
        return self._data

    def item(self) -> float | int | bool:
        if self._data.size != 1:
            raise ValueError(f"only a one-element tensor converts to a Python scalar, got shape {self.shape}")
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def float(self) -> Tensor:
        return ops.cast(self, np.float32)

    def double(self) -> Tensor:
        return ops.cast(self, np.float64)

    def long(self) -> Tensor:
        return Tensor(self._data.astype(np.int64))

    def int(self) -> Tensor:
        return Tensor(self._data.astype(np.int32))

    def bool(self) -> Tensor:
        return Tensor(self._data.astype(np.bool_))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._data if dtype is None else self._data.astype(dtype)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        """A one-element integer tensor used as an index: ``classes[labels[j]]``."""
        if self._data.size != 1 or self._data.dtype.kind not in "iub":
            raise TypeError(
                f"only one-element integer tensors can be used as an index, got shape {self.shape} "
                f"and dtype {self.dtype}"
            )
        return int(self._data.reshape(()))

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extras = f"shape={self._data.shape}, dtype={self.dtype}"
        if self.grad_fn is not None:
            extras += f", grad_fn={self.grad_fn!r}"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}, {extras})"

    def __format__(self, spec: str) -> str:
        """``f"{loss:.3f}"`` formats a one-element tensor as its number, as PyTorch does."""
        if spec and self._data.size == 1:
            return format(self.item(), spec)
        return format(repr(self), spec)

    # ---- .grad: checked where it is assigned, as in PyTorch (not later, inside a step) ---------
    @property
    def grad(self) -> Tensor | None:
        return self.__dict__.get("_grad")

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None and not isinstance(value, Tensor):
            raise TypeError("assigned grad expected to be a Tensor or None but got grad of type "
                            f"{type(value).__name__}")
        if value is not None and (value.shape, value.dtype) != (self.shape, self.dtype):
            raise RuntimeError(f"assigned grad has shape {tuple(value.shape)} and dtype {value.dtype}; "
                               f"the tensor has shape {tuple(self.shape)} and dtype {self.dtype}, "
                               "and they must be the same")
        self._grad = value

    # ---- PyTorch-program plumbing: devices and dtypes --------------------------------------
    @property
    def device(self) -> device:
        return device("cpu")

    @property
    def is_cuda(self) -> bool:
        return False

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other)``: a float
        cast is differentiable; the device must be the CPU; ``non_blocking``/``copy`` as PyTorch."""
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        unknown = set(kwargs) - {"dtype", "device"}
        if unknown:
            raise TypeError(f"Tensor.to() got unexpected keyword arguments {sorted(unknown)}")
        dtype = None
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif arg is not None:
                dtype = float_dtype_or_device(arg, "Tensor.to") or dtype
        out = self if dtype is None else ops.cast(self, dtype)
        return ops.clone(out) if copy and out is self else out

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def cpu(self) -> Tensor:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Tensor:
        refuse_device("cuda")
        return self  # unreachable: refuse_device raises

    def half(self) -> Tensor:
        refuse_half("Tensor.half")
        return self  # unreachable: refuse_half raises


def _operand(x: Tensor, other: Any) -> Any:
    """``other`` as the second operand of a binary op on ``x`` (a number takes x's dtype)."""
    return ops.elementwise.operands(x, other)[1]


def _refuse_inplace_in_graph(t: Tensor) -> None:
    """Refuse the in-place changes reverse mode cannot record (PyTorch refuses the first)."""
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation. "
            "Change it inside `with tinyres.no_grad():` (as optimizers do), or change a clone()."
        )
    if t._is_view:
        # PyTorch rewrites the history of the view's base; tinyres does not, and refuses
        # rather than give the base a stale gradient.
        raise RuntimeError(
            "an in-place operation on a view (reshape, slice, detach) is not recorded by tinyres "
            "autograd; write into the base tensor instead (base[index] = value), or clone() the view"
        )


class _Empty:
    pass


def attach(cls: type, methods: type) -> None:
    """Copy every name defined in the body of ``methods`` onto ``cls``; refuse to replace one."""
    for name, member in vars(methods).items():
        if name in vars(_Empty):  # __module__, __dict__, __doc__, ...: the class's own plumbing
            continue
        if name in vars(cls):
            raise TypeError(f"Tensor.{name} is defined in tinyres/engine.py already; define it once")
        setattr(cls, name, member)


attach(Tensor, TensorMethods)
