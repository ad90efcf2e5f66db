"""Your code becomes the library: the learner's own exercise solutions train a ResNet.

``mine("DIR")`` reads the exercise files in DIR (``ex01_*.py`` ... ``ex15_*.py``, as
``tinyres check --from DIR`` does), grades each piece, and inside a ``with`` block puts
every passing one in place of the library's:

===========================  ========  ===================================================
piece                        exercise  where it enters
===========================  ========  ===================================================
make_layer                   ex15      ``models.blocks.make_stage`` (projection shortcuts)
BasicBlock, PreActBlock,     ex12-14   ``make_stage`` builds stages of them
Bottleneck
im2col/col2im convolution    ex09      kernel family ``conv2d/im2col``
max-pool backward            ex10      kernel family ``max_pool2d``
batch-norm backward          ex11      kernel family ``batch_norm``
Tanh, MatMul                 ex02, 04  ``ops.tanh``, ``ops.matmul`` (2-d)
softmax cross-entropy        ex06      ``ops.cross_entropy`` (the mean)
backward walk, unbroadcast   ex01, 03  ``engine.WALK``, which ``Tensor.backward`` calls
SGD step                     ex07      ``optim.SGD.step`` (no Nesterov, no dampening)
===========================  ========  ===================================================

Everything is a context variable (``tinyres.pieces``, ``kernels.use_learner``,
``engine.WALK``): a ``with`` block in one thread changes nothing in another, and the
library is itself again when the block ends, by an exception too. A piece the learner's
signature cannot serve (a 2x3 kernel, a dilated convolution, Nesterov momentum, a 3-d
matmul) runs the library's code for that call.

``Mine.self_check(case)`` runs one training step in float64 twice, once with the
library's pieces and once with the learner's (same weights, same batch), and names the
first piece whose output or gradient disagrees, with its worst index.
``tinyres train --mine DIR`` and ``tinyres demo vanishing --mine DIR`` do all of this
(``--force`` swaps failing pieces in as well, and trains even when the check disagrees).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import contextvars
import hashlib
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyres import engine, kernels, nn, optim, pieces
from tinyres.arguments import UsageError
from tinyres.engine import Function, Tensor
from tinyres.kernels import batchnorm_numba, im2col_numpy, pool_reference
from tinyres.kernels.batchnorm_reference import Saved
from tinyres.models import blocks


@dataclass(frozen=True)
class Piece:
    """One piece of the library a learner's exercise can replace."""

    name: str
    exercise: str  # "ex09"
    attributes: tuple[str, ...]  # what the exercise file must define


# In the order the self-check tries them alone: the stages are built first, then the
# forward pass runs (convolution, pooling, normalisation, activations, loss), then
# the backward walk and the update.
PIECES: tuple[Piece, ...] = (
    Piece("make_layer", "ex15", ("make_layer",)),
    Piece("BasicBlock", "ex12", ("BasicBlock",)),
    Piece("PreActBlock", "ex13", ("PreActBlock",)),
    Piece("Bottleneck", "ex14", ("Bottleneck",)),
    Piece("im2col/col2im convolution", "ex09", ("im2col", "col2im")),
    Piece("max-pool backward", "ex10", ("max_pool2d_backward",)),
    Piece("batch-norm backward", "ex11", ("batchnorm_backward",)),
    Piece("Tanh", "ex02", ("Tanh",)),
    Piece("MatMul", "ex04", ("MatMul",)),
    Piece("softmax cross-entropy", "ex06", ("softmax_cross_entropy",)),
    Piece("backward walk", "ex01", ("backward",)),
    Piece("unbroadcast", "ex03", ("unbroadcast",)),
    Piece("SGD step", "ex07", ("sgd_step",)),
)
BY_NAME = {p.name: p for p in PIECES}
LIBRARY_BLOCKS = {"BasicBlock": blocks.BasicBlock, "PreActBlock": blocks.PreActBlock,
                  "Bottleneck": blocks.Bottleneck}

_active: contextvars.ContextVar[bool] = contextvars.ContextVar("tinyres_course_active", default=False)
# The unbroadcast the learner's walk calls by the name it imported (see ``_load``).
_reduce: contextvars.ContextVar[Callable[..., np.ndarray]] = contextvars.ContextVar(
    "tinyres_course_unbroadcast", default=engine.unbroadcast
)


def active() -> bool:
    """Whether this thread / task runs inside a ``mine(...)`` block."""
    return _active.get()


@dataclass
class Status:
    """What ``mine`` found for one piece: the file, the grader's verdict, whether it is swapped in."""

    piece: Piece
    path: Path | None
    state: str  # the grader's ("passed", "failed (2 of 5 properties pass)", ...) or "no file"
    swapped: bool
    module: types.ModuleType | None = field(default=None, repr=False)


# ---- loading and grading ------------------------------------------------------------------


def _file_for(folder: Path, exercise_id: str, stub_name: str) -> Path | None:
    """The exercise's own file name if present, else the one file starting with its id."""
    if (folder / stub_name).is_file():
        return folder / stub_name
    found = sorted(folder.glob(f"{exercise_id}*.py"))
    return found[0] if len(found) == 1 else None


def _grade(exercise_id: str, path: Path) -> str:
    """The grader's one-line verdict; remembered per file content in this process (grading all
    thirteen pieces takes about 20 s on 2 cores, and a lesson asks several times)."""
    key = (exercise_id, hashlib.sha256(path.read_bytes()).hexdigest())
    if key not in _GRADES:
        from tinyres.grading import BY_ID, grade  # hypothesis, an optional dependency: only when grading

        _GRADES[key] = grade(BY_ID[exercise_id], path).summary()
    return _GRADES[key]


_GRADES: dict[tuple[str, str], str] = {}


def _load(path: Path) -> types.ModuleType:
    from tinyres.grading.core import load

    module = load(path)
    if hasattr(module, "backward"):
        # The walk calls ``unbroadcast`` by the name it imported from the engine; this private
        # copy of the module reads it from a context variable, so it is the learner's ex03
        # exactly where that is swapped in (and never another thread's choice).
        module.unbroadcast = lambda grad, shape: _reduce.get()(grad, shape)
    return module


# ---- adapters: exercise signatures -> the library's seams ----------------------------------


class _Counted:
    """A learner's ``Function`` subclass behind a seam, counting its calls."""

    def __init__(self, cls: type[Function], used: Callable[[], None]):
        self.cls, self.used = cls, used

    def apply(self, *args: Any, **kwargs: Any) -> Tensor:
        self.used()
        return self.cls.apply(*args, **kwargs)


def _cross_entropy(softmax_cross_entropy: Callable, used: Callable[[], None]) -> _Counted:
    class LearnerCrossEntropy(Function):
        """The mean loss and its gradient from the learner's ex06; backward scales the gradient."""

        def forward(self, x: np.ndarray, *, target: np.ndarray) -> np.ndarray:
            loss, self.dx = softmax_cross_entropy(x.copy(), target.copy())
            return np.asarray(loss, dtype=x.dtype)

        def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
            return (np.asarray(self.dx) * grad,)

    return _Counted(LearnerCrossEntropy, used)


def _sgd_step(sgd_step: Callable, used: Callable[[], None]) -> Callable[..., None]:
    def step(state: dict, p: Tensor, g: np.ndarray, lr: float, momentum: float, weight_decay: float) -> None:
        """One parameter's update by the learner's ex07, on copies; the buffer kept as SGD keeps it."""
        used()
        buffer = state.get("momentum_buffer")
        new_p, buffer = sgd_step(p._data.copy(), g.copy(), None if buffer is None else buffer.copy(),
                                 lr, momentum, weight_decay)
        if momentum != 0:
            state["momentum_buffer"] = np.asarray(buffer, dtype=p.dtype)
        p.copy_(Tensor(np.asarray(new_p, dtype=p.dtype)))

    return step


def _stage(mine_blocks: dict[type, type], make_layer: Callable | None,
           used: Callable[[str], None]) -> Callable:
    def stage(block: type, inplanes: int, planes: int, count: int, stride: int, shortcut: Any,
              options: dict) -> nn.Sequential | None:
        """A stage of the learner's blocks (and make_layer), or None: the library builds it.

        The exercises' blocks take (inplanes, planes, stride, downsample) and build BatchNorm2d
        and ReLU themselves, so they serve stages with those defaults only; ex15 builds
        torchvision's projection shortcut (option B), so it serves stages that ask for one.
        """
        defaults = (set(options) <= {"norm_layer", "activation"}
                    and options.get("norm_layer") in (None, nn.BatchNorm2d)
                    and options.get("activation") in (None, nn.ReLU))
        if not defaults:
            return None
        mine = mine_blocks.get(block)
        projection = (getattr(shortcut, "func", shortcut) is blocks.projection_shortcut
                      and not getattr(shortcut, "keywords", {}).get("norm_layer"))
        if make_layer is not None and projection and (mine is not None or block in LIBRARY_BLOCKS.values()):
            used("make_layer")
            if mine is not None:
                used(block.__name__)
            return make_layer(mine or block, inplanes, planes, count, stride)
        if mine is None:
            return None
        used(block.__name__)
        outplanes = planes * mine.expansion
        downsample = shortcut(inplanes, outplanes, stride) if stride != 1 or inplanes != outplanes else None
        layers = [mine(inplanes, planes, stride, downsample)]
        layers += [mine(outplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    return stage


def _conv_kernels(ex09: types.ModuleType, used: Callable[[], None]) -> types.ModuleType:
    """The ``conv2d/im2col`` protocol around the learner's ``im2col``/``col2im``.

    The exercise takes one kernel size, stride and padding for both axes and no dilation;
    other convolutions run the library's NumPy im2col.
    """

    def forward(x, w, b, stride, padding, dilation):
        k = w.shape[2]
        square = w.shape[3] == k and stride[0] == stride[1] and padding[0] == padding[1]
        if not (square and dilation == (1, 1)):
            y, saved = im2col_numpy.forward(x, w, b, stride, padding, dilation)
            return y, ("library", saved)
        used()
        n, c_out = x.shape[0], w.shape[0]
        s, p = stride[0], padding[0]
        ho, wo = (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1
        cols = ex09.im2col(x, k, s, p)  # (N*Ho*Wo, C*k*k)
        y = (cols @ w.reshape(c_out, -1).T).reshape(n, ho, wo, c_out).transpose(0, 3, 1, 2)
        if b is not None:
            y = y + b.reshape(1, -1, 1, 1)
        return np.ascontiguousarray(y, dtype=x.dtype), ("mine", x.shape, w, cols, k, s, p)

    def backward(grad, saved, input_grad, bias_grad):
        if saved[0] == "library":
            return im2col_numpy.backward(grad, saved[1], input_grad, bias_grad)
        _, x_shape, w, cols, k, s, p = saved
        g = grad.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])  # rows (n, oh, ow), as im2col's
        dw = (g.T @ cols).reshape(w.shape).astype(w.dtype, copy=False)
        db = grad.sum(axis=(0, 2, 3)) if bias_grad else None
        dx = ex09.col2im(g @ w.reshape(w.shape[0], -1), x_shape, k, s, p) if input_grad else None
        return (None if dx is None else np.asarray(dx, dtype=grad.dtype)), dw, db

    return _kernel_module("conv2d_im2col", ex09, forward=forward, backward=backward)


@dataclass
class _PoolSaved:
    index: np.ndarray  # the library forward's winners, for the calls the exercise cannot serve
    x: np.ndarray | None  # the input, when the learner's backward serves the call
    kernel: int = 0
    stride: int = 0


def _pool_kernels(ex10: types.ModuleType, used: Callable[[], None]) -> types.ModuleType:
    """The ``max_pool2d`` protocol: the library's forward, the learner's backward.

    The exercise's backward finds the winners again from x (square windows, no padding,
    no dilation); the op hands back whatever forward returned as its "index", so the
    adapter returns x there.
    """

    def max_pool2d_forward(x, kernel, stride, padding, dilation):
        out, index = pool_reference.max_pool2d_forward(x, kernel, stride, padding, dilation)
        fits = kernel[0] == kernel[1] and stride[0] == stride[1] and padding == (0, 0) and dilation == (1, 1)
        return out, _PoolSaved(index, x if fits else None, kernel[0], stride[0])

    def max_pool2d_backward(grad, saved, x_shape):
        if saved.x is None:
            return pool_reference.max_pool2d_backward(grad, saved.index, x_shape)
        used()
        dx = ex10.max_pool2d_backward(grad, saved.x, saved.kernel, saved.stride)
        return np.asarray(dx, dtype=grad.dtype)

    return _kernel_module("max_pool2d", ex10, max_pool2d_forward=max_pool2d_forward,
                          max_pool2d_backward=max_pool2d_backward)


class _NormSaved(Saved):
    """The library's saved object plus eps, which the exercise's backward takes."""

    def __new__(cls, saved: Saved, eps: float) -> _NormSaved:
        new = super().__new__(cls, *saved)
        new.eps = eps
        return new


def _norm_kernels(ex11: types.ModuleType, used: Callable[[], None]) -> types.ModuleType:
    """The ``batch_norm`` protocol: the library's (Numba) forward, the learner's training backward.

    The kernels see (N, C, S); the exercise wants (N, C, H, W): S becomes (S, 1). The
    exercise covers training mode; eval mode's backward (a scaling) stays the library's.
    """

    def forward(x, gamma, beta, eps, running=None):
        y, saved = batchnorm_numba.forward(x, gamma, beta, eps, running)
        return y, _NormSaved(saved, eps)

    def backward(dy, saved):
        if not saved.training:
            return batchnorm_numba.backward(dy, saved)
        used()
        dx, dgamma, dbeta = ex11.batchnorm_backward(dy[..., None], saved.x[..., None], saved.gamma, saved.eps)
        return np.asarray(dx, dtype=dy.dtype).reshape(dy.shape), dgamma, dbeta

    return _kernel_module("batch_norm", ex11, forward=forward, backward=backward)


def _kernel_module(family: str, source: types.ModuleType, **functions: Callable) -> types.ModuleType:
    """A module object with the family's protocol functions, named after the learner's file."""
    module = types.ModuleType(f"learner {family} ({Path(source.__file__ or '?').name})")
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module


# ---- the backward walk ---------------------------------------------------------------------


def _hooked(hooks: Iterable[Callable], grad: np.ndarray) -> np.ndarray:
    """Run tensor hooks on ``grad`` as the engine does: a returned gradient must keep shape and dtype."""
    for hook in hooks:
        new = hook(Tensor(grad))
        if new is None:
            continue
        new = np.asarray(new)
        if new.shape != grad.shape or new.dtype != grad.dtype:
            raise RuntimeError(f"hook {getattr(hook, '__name__', hook)!r} changed the gradient from "
                               f"{grad.shape} {grad.dtype} to {new.shape} {new.dtype}")
        grad = new
    return grad


class _MirrorOp(Function):
    """One op of the real graph as the learner's walk sees it.

    The exercise walks tensors and ``grad_fn.inputs``; the engine keeps a graph of ops
    and ``parents`` (an in-place op gives a tensor a new ``grad_fn``, so the tensor
    objects alone do not say which value an op used). The mirror graph has one
    stand-in tensor per real node, with the real node's shape and dtype, so the
    learner's walk orders and sums exactly the real graph. Its backward does what the
    engine does around an op: hooks, ``retain_grad``, the saved-version checks, release.
    """

    def __init__(self, node: Function, retain_graph: bool, reduce: Callable | None):
        self.node, self.retain_graph, self.reduce = node, retain_graph, reduce

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        node = self.node
        if node.freed:
            raise RuntimeError("Trying to backward through the graph a second time: its saved values were "
                               "freed by the first backward(). Pass retain_graph=True to the first call.")
        grad = _hooked(node._hooks.values(), grad)
        if node.retained_by is not None:
            node.retained_by.grad = Tensor(grad.copy(order="K"))
        for saved in node.saved:
            saved.check()
        parents, inputs = node.parents, node.inputs
        grads = node.backward(grad)
        if len(grads) != len(inputs):
            raise RuntimeError(f"{type(node).__name__}.backward returned {len(grads)} gradients "
                               f"for {len(inputs)} inputs")
        if not self.retain_graph:
            node.release()
        out = []
        for parent, inp, g in zip(parents, inputs, grads):
            if parent is None or g is None:
                out.append(None)
                continue
            g = np.asarray(g, dtype=inp.dtype)
            out.append(self.reduce(g, inp.shape) if self.reduce is not None else g)
        return tuple(out)


class _Seed(Function):
    """The mirror's scalar root: d(seed-weighted sum of root)/d(root) is the seed gradient."""

    def __init__(self, seed: np.ndarray):
        self.seed = seed

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        return (self.seed * grad,)


def _stand_in(like: Tensor) -> Tensor:
    """A tensor with ``like``'s shape and dtype that holds no memory (a broadcast zero)."""
    return Tensor(np.broadcast_to(np.zeros((), dtype=like.dtype), like.shape), requires_grad=True)


def _mirror(root: Tensor, seed: np.ndarray, retain_graph: bool,
            reduce: Callable | None) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """The mirror graph of ``root``'s: its scalar root and the (real leaf, stand-in) pairs."""
    stand_ins: dict[int, Tensor] = {}

    def stand_in(node: Function | Tensor, like: Tensor) -> Tensor:
        if id(node) not in stand_ins:
            t = stand_ins[id(node)] = _stand_in(like)
            if isinstance(node, Function):
                t.grad_fn = _MirrorOp(node, retain_graph, reduce)
            pending.append(node)
        return stand_ins[id(node)]

    pending: list[Function | Tensor] = []
    top = root if root.grad_fn is None else root.grad_fn
    scalar = Tensor(np.zeros((), dtype=root.dtype), requires_grad=True)
    scalar.grad_fn = _Seed(seed)
    scalar.grad_fn.inputs = (stand_in(top, root),)
    scalar.grad_fn.parents = (scalar.grad_fn.inputs[0].grad_fn or scalar.grad_fn.inputs[0],)
    leaves = []
    while pending:
        node = pending.pop()
        t = stand_ins[id(node)]
        if isinstance(node, Tensor):
            leaves.append((node, t))
            continue
        ins = [None if parent is None else stand_in(parent, inp)
               for parent, inp in zip(node.parents, node.inputs)]
        t.grad_fn.inputs = tuple(ins)
        t.grad_fn.parents = tuple(None if i is None else (i.grad_fn or i) for i in ins)
    return scalar, leaves


def _walk(learner_backward: Callable | None, reduce: Callable | None, library_walk: Callable,
          used: Callable[[str], None]) -> Callable[[Tensor, np.ndarray, bool], None]:
    """A ``WALK``: the learner's ``backward(root)`` (or the library's walk with the learner's
    unbroadcast) over the mirror graph, then the leaves' gradients into the real leaves."""

    def walk(root: Tensor, seed: np.ndarray, retain_graph: bool) -> None:
        if learner_backward is not None:
            used("backward walk")
            # the learner's walk reduces with its own unbroadcast call (``_load``)
            scalar, leaves = _mirror(root, seed, retain_graph, None)
            learner_backward(scalar)
        else:
            scalar, leaves = _mirror(root, seed, retain_graph, reduce)
            library_walk(scalar, np.ones((), dtype=root.dtype), True)
        for leaf, t in leaves:
            if t.grad is None:
                continue
            # The engine's own accumulation: PyTorch's sum into .grad, then post-accumulate hooks (DDP's).
            engine._accumulate(leaf, _hooked(leaf._hooks.values(), np.asarray(t.grad, dtype=leaf.dtype)))

    return walk


# ---- mine ----------------------------------------------------------------------------------


class Mine:
    """The learner's pieces found in a folder; a context manager that swaps the passing ones in.

    Build it with ``mine(folder)``. ``status`` says, per piece, which file was found,
    what the grader said and whether the piece is swapped in; ``used`` counts the calls
    each swapped piece served since the last ``reset_counts``.
    """

    def __init__(self, folder: Path, statuses: list[Status]):
        self.folder, self.status = folder, statuses
        self.used: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._local = threading.local()  # the open ``with`` blocks, per thread: one Mine may serve several

    @property
    def swapped(self) -> list[str]:
        """The names of the pieces that are the learner's inside the block."""
        return [s.piece.name for s in self.status if s.swapped]

    def _count(self, name: str) -> None:
        with self._lock:
            self.used[name] += 1

    def _module(self, name: str) -> types.ModuleType:
        return next(s.module for s in self.status if s.piece.name == name)

    def using(self, names: Iterable[str]) -> contextlib.ExitStack:
        """A context manager that swaps in exactly ``names`` (a subset of ``swapped``)."""
        names = set(names)
        if not names <= set(self.swapped):
            raise ValueError(f"not swapped in: {sorted(names - set(self.swapped))}")

        def count(name: str) -> Callable[[], None]:
            return lambda: self._count(name)

        seams: dict[str, Any] = {}
        if "Tanh" in names:
            seams["Tanh"] = _Counted(self._module("Tanh").Tanh, count("Tanh"))
        if "MatMul" in names:
            seams["MatMul"] = _Counted(self._module("MatMul").MatMul, count("MatMul"))
        if "softmax cross-entropy" in names:
            ex06 = self._module("softmax cross-entropy")
            loss = ex06.softmax_cross_entropy
            seams["cross_entropy"] = _cross_entropy(loss, count("softmax cross-entropy"))
        if "SGD step" in names:
            seams["sgd_step"] = _sgd_step(self._module("SGD step").sgd_step, count("SGD step"))
        mine_blocks = {LIBRARY_BLOCKS[b]: getattr(self._module(b), b) for b in LIBRARY_BLOCKS if b in names}
        make_layer = self._module("make_layer").make_layer if "make_layer" in names else None
        if mine_blocks or make_layer is not None:
            seams["make_stage"] = _stage(mine_blocks, make_layer, self._count)
        families = {}
        if "im2col/col2im convolution" in names:
            families["conv2d/im2col"] = _conv_kernels(self._module("im2col/col2im convolution"),
                                                      count("im2col/col2im convolution"))
        if "max-pool backward" in names:
            families["max_pool2d"] = _pool_kernels(self._module("max-pool backward"),
                                                   count("max-pool backward"))
        if "batch-norm backward" in names:
            families["batch_norm"] = _norm_kernels(self._module("batch-norm backward"),
                                                   count("batch-norm backward"))

        stack = contextlib.ExitStack()
        stack.enter_context(pieces.swapped(seams))
        stack.enter_context(kernels.use_learner(families))
        stack.enter_context(_within(_active, True))
        learner_walk = self._module("backward walk").backward if "backward walk" in names else None
        learner_reduce = None
        if "unbroadcast" in names:
            ex03 = self._module("unbroadcast").unbroadcast

            def learner_reduce(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
                self._count("unbroadcast")
                return np.asarray(ex03(grad, tuple(shape)), dtype=grad.dtype)

            stack.enter_context(_within(_reduce, learner_reduce))
        else:
            stack.enter_context(_within(_reduce, engine.unbroadcast))
        if learner_walk is not None or learner_reduce is not None:
            walk = _walk(learner_walk, learner_reduce, engine.WALK.get(), self._count)
            stack.enter_context(_within(engine.WALK, walk))
        return stack

    def __enter__(self) -> Mine:
        stack = self.using(self.swapped)
        stack.__enter__()
        self._local.__dict__.setdefault("stacks", []).append(stack)
        return self

    def __exit__(self, *exc: object) -> None:
        self._local.stacks.pop().__exit__(*exc)

    def table(self) -> str:
        """Which pieces are the learner's and which the library's, and why."""
        lines = [f"pieces from {self.folder}:"]
        for s in self.status:
            who = "yours  " if s.swapped else "library"
            where = s.path.name if s.path is not None else "-"
            note = s.state if s.state == "passed" or not s.swapped else f"{s.state}; swapped in by --force"
            lines.append(f"  {who}  {s.piece.exercise}  {s.piece.name:<26} {where:<32} {note}")
        return "\n".join(lines)

    def self_check(self, case: Case) -> CheckResult:
        """One float64 step with the learner's pieces against the library's (same weights, same batch).

        All swapped pieces together first; if anything disagrees, each piece alone, in
        ``PIECES`` order, so the first piece that disagrees by itself is named.
        """
        with self.using([]):
            state = _initial_state(case)
            truth = _step(case, state)
        self.used.clear()
        together = self._compare(case, state, truth, self.swapped)
        exercised = [name for name in self.swapped if self.used[name]]
        if together is None:
            return CheckResult(True, exercised, self.swapped, None, None)
        for name in exercised:
            alone = self._compare(case, state, truth, [name])
            if alone is not None:
                return CheckResult(False, exercised, self.swapped, name, alone)
        return CheckResult(False, exercised, self.swapped, "the pieces together", together)

    def _compare(self, case: Case, state: dict, truth: dict, names: list[str]) -> str | None:
        with self.using(names):
            try:
                got = _step(case, state)
            except Exception as err:  # a learner's piece that raises is a disagreement, named
                return f"raised {type(err).__name__}: {' '.join(str(err).split())[:200]}"
        return _first_difference(truth, got)


def _within(variable: contextvars.ContextVar, value: Any) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def block() -> Iterator[None]:
        token = variable.set(value)
        try:
            yield
        finally:
            variable.reset(token)

    return block()


def mine(folder: str | Path, *, force: bool = False, only: Iterable[str] | None = None) -> Mine:
    """The learner's pieces in ``folder``, graded; ``with mine(folder): ...`` swaps the passing ones in.

    ``force`` swaps in pieces that fail the grader too (not files that are missing, not
    started or cannot be imported). ``only`` limits the pieces looked at (names from
    ``PIECES``); the others stay the library's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--mine: no folder {folder}; expected a folder of exercise files "
                                "(ex01_backward.py, ...), e.g. a copy of lessons/exercises")
    wanted = set(BY_NAME) if only is None else set(only)
    unknown = sorted(wanted - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown piece {', '.join(unknown)}; the pieces are {', '.join(BY_NAME)}")
    try:
        from tinyres.grading import BY_ID
    except ModuleNotFoundError as err:  # hypothesis: the grader's optional dependency
        raise ImportError(f"--mine grades your pieces with tinyres check, which needs {err.name}: "
                          "pip install -e \".[lessons]\"") from None

    statuses = []
    for piece in PIECES:
        path = _file_for(folder, piece.exercise, BY_ID[piece.exercise].filename)
        if piece.name not in wanted or path is None:
            statuses.append(Status(piece, path, "not asked for" if path is not None else "no file", False))
            continue
        state = _grade(piece.exercise, path)
        module = None
        usable = state == "passed" or (force and state.startswith(("failed", "timed out")))
        if usable:
            module = _load(path)
            missing = [a for a in piece.attributes if not hasattr(module, a)]
            if missing:
                state, usable = f"defines no {', '.join(missing)}", False
        statuses.append(Status(piece, path, state, usable, module if usable else None))
    return Mine(folder, statuses)


# ---- the self-check ------------------------------------------------------------------------


@dataclass
class Case:
    """One training step to compare: a model builder, a batch, the optimizer's settings."""

    build: Callable[[], nn.Module]
    x: np.ndarray
    y: np.ndarray
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclass
class CheckResult:
    agrees: bool
    exercised: list[str]  # swapped pieces the step called
    swapped: list[str]
    piece: str | None  # the first piece that disagrees
    detail: str | None  # what disagrees, where, by how much

    def text(self) -> str:
        idle = [name for name in self.swapped if name not in self.exercised]
        lines = [f"self-check (one float64 step, same weights and batch): your pieces used by the step: "
                 f"{', '.join(self.exercised) or 'none'}"]
        if idle:
            lines.append(f"  swapped in but not used by this model: {', '.join(idle)}")
        if self.agrees:
            lines.append("  outputs, gradients and updated weights agree with the library's")
        else:
            lines.append(f"  DISAGREES: {self.piece}: {self.detail}")
        return "\n".join(lines)


TOLERANCE = 1e-6  # relative to the largest magnitude of the library's value; float64 sums differ by ~1e-15


def _initial_state(case: Case) -> dict[str, np.ndarray]:
    model = case.build().double()
    return {k: np.array(v) for k, v in model.state_dict().items()}


def _step(case: Case, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Logits, loss, every gradient, and the state after two SGD updates with those gradients.

    Two updates, so the momentum rule of later steps runs too.
    """
    model = case.build().double()
    model.load_state_dict(state)
    model.train()
    opt = optim.SGD(model.parameters(), lr=case.lr, momentum=case.momentum, weight_decay=case.weight_decay)
    logits = model(Tensor(case.x.astype(np.float64)))
    loss = nn.functional.cross_entropy(logits, Tensor(case.y.astype(np.int64)))
    opt.zero_grad()
    loss.backward()
    out = {"output (logits)": logits.detach().numpy().copy(), "loss": np.asarray(loss.item())}
    for name, p in model.named_parameters():
        out[f"gradient of {name}"] = np.zeros(p.shape) if p.grad is None else p.grad.numpy().copy()
    opt.step()
    opt.step()
    out.update({f"{name} after the step": np.array(v) for name, v in model.state_dict().items()})
    return out


def _first_difference(truth: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> str | None:
    """The first quantity that differs, its worst index and both values; None if all agree."""
    for what, want in truth.items():
        have = got.get(what)
        if have is None:
            return f"{what} is missing (the model's names differ from the library's)"
        if have.shape != want.shape:
            return f"{what} has shape {have.shape}, the library's {want.shape}"
        diff = np.abs(have.astype(np.float64) - want)
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-12)
        if diff.size and diff.max() > TOLERANCE * scale:
            worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
            index = tuple(int(i) for i in worst)
            return (f"{what}, worst at index {index}: yours {float(have[index]):.6g}, "
                    f"the library's {float(want[index]):.6g} (relative to its largest "
                    f"{scale:.3g}: {diff.max() / scale:.2g} > {TOLERANCE:g})")
    return None


# ---- the command line: --mine DIR, --force -------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mine DIR`` and ``--force`` for ``tinyres train`` and ``tinyres demo``."""
    parser.add_argument("--mine", metavar="DIR", default=None,
                        help="run with your exercise solutions in DIR in place of the library's pieces "
                             "(those that pass tinyres check); a self-check compares them first")
    parser.add_argument("--force", action="store_true",
                        help="with --mine: swap in failing pieces too, and run even if the self-check "
                             "disagrees")


def run_mine(args: argparse.Namespace, command: Callable[[argparse.Namespace], int],
             case: Callable[[], Case]) -> int:
    """Grade and list the pieces in ``args.mine``, self-check them, then run ``command`` inside ``mine``."""
    if args.mine is None:
        raise UsageError("--force goes with --mine DIR")
    learner = mine(args.mine, force=args.force)
    print(learner.table())
    result = learner.self_check(case())
    print(result.text())
    if not result.agrees and not args.force:
        print(f"stopped: {result.piece} disagrees with the library's (see above); fix it, or run "
              "with --force to train with it anyway", file=sys.stderr)
        return 1
    learner.used.clear()
    with learner:
        status = command(args)
    used = [name for name in learner.swapped if learner.used[name]]
    print(f"your pieces in this run: {', '.join(used) or 'none'}")
    return status
