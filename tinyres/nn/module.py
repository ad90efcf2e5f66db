"""``Module``: the base class of every layer and model.

A module owns three kinds of named state, each kept in an ordered registry:

- ``_parameters``: ``Parameter`` tensors that the optimiser trains;
- ``_buffers``: tensors that are state but not trained (BatchNorm's running mean);
- ``_modules``: sub-modules, which own state of their own.

Assigning to an attribute registers by type (``self.fc = Linear(...)`` goes into
``_modules``, ``self.weight = Parameter(...)`` into ``_parameters``). Every
registered object is *also* stored in the instance ``__dict__``, so plain attribute
lookup finds it and there is no ``__getattr__``: a typo such as ``model.fcc`` raises
``AttributeError`` at once instead of being searched for in the registries.

Walking the tree gives dotted names, the same as PyTorch's (``layer1.0.conv1.weight``):
that is what ``named_parameters`` and ``state_dict`` return.

>>> import tinyres as tr
>>> from tinyres import nn
>>> class Affine(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.scale = nn.Parameter(tr.ones(3))
...         self.register_buffer("calls", tr.zeros(1))
...     def forward(self, x):
...         return x * self.scale
>>> model = nn.Sequential(Affine(), nn.ReLU())
>>> [name for name, _ in model.named_parameters()]
['0.scale']
>>> list(model.state_dict())
['0.scale', '0.calls']
>>> model
Sequential(
  (0): Affine()
  (1): ReLU()
)
>>> model.scale
Traceback (most recent call last):
    ...
AttributeError: 'Sequential' object has no attribute 'scale'
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from tinyres.engine import Tensor, no_grad
from tinyres.nn.parameter import Parameter
from tinyres.plumbing import float_dtype_or_device, refuse_device, refuse_half

_hook_ids = itertools.count()


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(..., strict=False)`` did not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` takes the hook out."""

    def __init__(self, hooks: dict[int, Callable], key: int):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


def _array_of(value: Any) -> np.ndarray:
    """The array behind a state-dict value: a Tensor, an array, a number, or anything
    with ``__array__`` (a PyTorch tensor, for instance)."""
    if isinstance(value, Tensor):
        return value._data
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()  # a torch tensor that may require grad
    return np.asarray(value)


def _float_dtype(dtype: Any) -> np.dtype | None:
    """``dtype`` as a NumPy float dtype if ``to(...)`` got a dtype, None for the CPU;
    another device or float16 is refused (``tinyres.plumbing``)."""
    dtype = float_dtype_or_device(dtype, "Module.to")
    if dtype is None:
        return None
    if dtype.kind != "f":
        raise TypeError(f"Module.to: only floating-point dtypes are allowed, got {dtype}")
    return dtype


def _indent(text: str, spaces: int) -> str:
    """Indent every line of ``text`` but the first (for nested module reprs)."""
    lines = text.split("\n")
    return "\n".join([lines[0]] + [" " * spaces + line for line in lines[1:]])


class Module:
    """Base class for layers and models: subclass it, set attributes in ``__init__``
    (after calling ``super().__init__()``) and write ``forward``."""

    # Names of buffers that a state dict may leave out; the buffer then keeps its
    # value (BatchNorm's ``num_batches_tracked``, which old checkpoints lack).
    _optional_state: tuple[str, ...] = ()

    def __init__(self) -> None:
        # object.__setattr__ because our own __setattr__ needs these registries.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        self.training = True

    # ---- running --------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        name = type(self).__name__
        raise NotImplementedError(f'Module [{name}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            replaced = hook(self, args, output)
            if replaced is not None:
                output = replaced
        return output

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-None
        return value replaces the output. ``tinyres.summary`` is built on this."""
        key = next(_hook_ids)
        self._forward_hooks[key] = hook
        return RemovableHandle(self._forward_hooks, key)

    # ---- registration ---------------------------------------------------------------
    def _check_new_name(self, kind: str, name: Any, registry: Mapping) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f'{kind} name can\'t be empty or contain ".", got {name!r}')
        if hasattr(self, name) and name not in registry:
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` (or ``None``: a declared-but-absent parameter, like a
        convolution without bias) under ``name``."""
        self._check_new_name("parameter", name, self._parameters)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(tinyres.nn.Parameter or None required)"
            )
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a tensor that is state but not trained; ``persistent=False`` keeps it
        out of ``state_dict``."""
        self._check_new_name("buffer", name, self._buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                "(tinyres.Tensor or None required)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a sub-module under ``name`` (what ``self.name = module`` does)."""
        self._check_new_name("module", name, self._modules)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    def _unregister(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def __setattr__(self, name: str, value: Any) -> None:
        registries = self.__dict__.get("_parameters")
        if isinstance(value, (Parameter, Module)):
            if registries is None:
                kind = "parameters" if isinstance(value, Parameter) else "module"
                raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
            self._unregister(name)
            if isinstance(value, Parameter):
                self.register_parameter(name, value)
            else:
                self.add_module(name, value)
        elif registries is not None and name in self._parameters:
            # A parameter slot takes a Parameter or None, never a plain tensor:
            # ``self.weight = self.weight * 2`` would silently stop training it.
            self.register_parameter(name, value)
        elif registries is not None and name in self._modules:
            self.add_module(name, value)
        elif registries is not None and name in self._buffers:
            self.register_buffer(name, value, persistent=name not in self._non_persistent)
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name not in self.__dict__:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        self._unregister(name)

    # ---- walking the tree -----------------------------------------------------------
    def named_modules(self, memo: set[int] | None = None, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every module below it, each once, depth first."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules (each once)."""
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry: str, prefix: str, recurse: bool) -> Iterator[tuple[str, Tensor]]:
        """Entries of one registry across the tree; a tensor shared by two modules
        is yielded once (under its first name), as in PyTorch."""
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every sub-module, then on this one (e.g. to initialise)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- modes, gradients, dtypes ---------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (BatchNorm uses batch statistics) here and below."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode (BatchNorm uses its running statistics): ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients: ``grad = None`` (PyTorch 2's default), or
        filled with zeros when ``set_to_none=False``."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Switch gradient tracking for every parameter (freezing a backbone, say)."""
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Cast floating-point parameters and buffers in place: ``to(tr.float64)``.

        The device ``"cpu"`` is accepted and changes nothing; integer buffers
        (``num_batches_tracked``) keep their dtype, as in PyTorch.
        """
        kwargs.pop("non_blocking", None)
        for arg in (*args, *kwargs.values()):
            dtype = _float_dtype(arg)
            if dtype is None:
                continue
            for tensor in [*self.parameters(), *self.buffers()]:
                if tensor.dtype.kind == "f":
                    tensor._data = tensor._data.astype(dtype)
                    if tensor.grad is not None:
                        tensor.grad = Tensor(tensor.grad._data.astype(dtype))
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def cpu(self) -> Module:
        return self

    def cuda(self, device: Any = None) -> Module:
        refuse_device("cuda")
        return self  # unreachable: refuse_device raises

    def half(self) -> Module:
        refuse_half("Module.half")
        return self  # unreachable: refuse_half raises

    # ---- state dict -----------------------------------------------------------------
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Every parameter and persistent buffer by dotted name, as PyTorch names them.

        Values are tensors that share memory with the module (detached unless
        ``keep_vars``), as in PyTorch: ``v.numpy()`` gives the array, and a copy must
        be taken (``copy.deepcopy``) to keep a snapshot while training goes on.
        """
        out: OrderedDict[str, Tensor] = OrderedDict()
        for module_prefix, module in self.named_modules(prefix=prefix):
            dot = f"{module_prefix}." if module_prefix else ""
            for name, param in module._parameters.items():
                if param is not None:
                    out[dot + name] = param if keep_vars else param.detach()
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent:
                    out[dot + name] = buffer if keep_vars else buffer.detach()
        return out

    def _state_slots(self) -> tuple[dict[str, Tensor], set[str]]:
        """The tensors ``load_state_dict`` fills, and the keys it may find missing."""
        slots = self.state_dict(keep_vars=True)
        optional = {
            (f"{prefix}.{name}" if prefix else name)
            for prefix, module in self.named_modules()
            for name in module._optional_state
        }
        return slots, optional & set(slots)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values (NumPy arrays or tensors) into the parameters and buffers.

        All or nothing: checked before anything is copied (a read-only slot included),
        and a copy that fails part-way puts back the slots already copied, so a refused
        load leaves the module as it was and names the entry. A shape mismatch is always
        an error; missing or unexpected keys are an error when ``strict``, and are returned
        otherwise. Values are cast to each
        slot's dtype and copied in place, so optimisers keep their references.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"expected a mapping of names to arrays, got {type(state_dict).__name__}")
        slots, optional = self._state_slots()
        missing = [k for k in slots if k not in state_dict and k not in optional]
        unexpected = [k for k in state_dict if k not in slots]
        errors = []
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        arrays = {}
        for key, target in slots.items():
            if key not in state_dict:
                continue
            try:
                value = _array_of(state_dict[key])
            except (TypeError, ValueError, RuntimeError) as exc:
                errors.append(f"value for {key} is not an array ({type(state_dict[key]).__name__}): {exc}")
                continue
            if value.dtype.kind not in "biuf":
                errors.append(f"value for {key} has non-numeric dtype {value.dtype}")
            elif value.shape != target.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {value.shape} from "
                    f"checkpoint, the shape in current model is {target.shape}."
                )
            elif not target._data.flags.writeable:
                errors.append(f"{key} is read-only in the current model (its array is not writeable)")
            else:
                arrays[key] = value
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors)
            )
        self._copy_all_or_nothing(slots, arrays)
        return IncompatibleKeys(missing, unexpected)

    def _copy_all_or_nothing(self, slots: dict[str, Tensor], arrays: dict[str, np.ndarray]) -> None:
        """Copy each array into its slot; if one copy fails (memory, a cast, Ctrl-C), put the
        slots already copied back as they were and name the entry that failed."""
        done: list[tuple[Tensor, np.ndarray]] = []
        key = ""
        try:
            with no_grad():  # in place, as PyTorch's param.copy_(value): versions count it
                for key, value in arrays.items():
                    old = slots[key]._data.copy()
                    slots[key].copy_(Tensor(value))
                    done.append((slots[key], old))
        except BaseException as exc:
            for slot, old in reversed(done):
                np.copyto(slot._data, old)
            if not isinstance(exc, Exception):
                raise
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\tcopying {key} failed "
                f"({type(exc).__name__}: {exc}); the module is as it was"
            ) from exc

    # ---- printing -------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The settings shown inside the parentheses; layers override it."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr().split("\n") if self.extra_repr() else []
        children = [f"({name}): {_indent(repr(child), 2)}" for name, child in self._modules.items()]
        if not children and len(extra) <= 1:
            return f"{type(self).__name__}({''.join(extra)})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(extra + children) + "\n)"
