"""Array kernels behind the neural-network ops, in up to three tiers, and the one way to pick them.

- ``"reference"``: plain loops or direct NumPy, written to be read, used as the oracle;
- ``"numpy"``: vectorised NumPy (e.g. im2col + one matrix product);
- ``"numba"``: compiled Numba kernels, the default and the fastest.

Every op family has a table ``tier -> module`` in ``KERNELS`` below; an op asks
``select(family)`` once, in its ``forward``, keeps the module it got, and calls the
same module in ``backward``. A tier an op family lacks falls back to the next simpler
one (``numba -> numpy -> reference``). The convolution has a second, orthogonal choice:
the *algorithm* (``"im2col"``, ``"winograd"`` or ``"direct"``), picked in ``select`` from the layer's shapes.

Both choices are context variables, so a ``with use_tier(...)`` block in one thread
(or asyncio task) never changes the tier another thread sees:

>>> from tinyres import kernels
>>> with kernels.use_tier("reference"):
...     kernels.get_tier(), kernels.select("conv2d").__name__
('reference', 'tinyres.kernels.conv_reference')
>>> kernels.get_tier(), kernels.select("avg_pool2d").__name__   # no faster avg-pool kernel
('numba', 'tinyres.kernels.pool_reference')

The convolution's algorithm is chosen per layer, from its shapes, in ``conv_algorithm``:
``"auto"`` (the default) runs Winograd F(4x4, 3x3) only where it measured faster than
im2col over a whole forward + backward (large 64+-channel planes), direct convolution on
layers of up to 64 channels and 3x3 kernels, im2col elsewhere;
``use_algorithm("im2col" | "winograd" | "direct", tile=2 | 4)`` forces one:

>>> with kernels.use_algorithm("winograd", tile=2):
...     kernels.get_algorithm(), kernels.select("conv2d", w_shape=(8, 8, 3, 3)).__name__
(('winograd', 2), 'tinyres.kernels.winograd_numba')

The kernel modules of one family follow one protocol, written in
``docs/architecture.md`` (for example a convolution module has
``forward(x, w, b, stride, padding, dilation) -> (y, saved)`` and
``backward(grad, saved, input_grad, bias_grad) -> (dx, dw, db)``); ``register``
refuses a module that lacks one of its family's functions (``PROTOCOLS``).
``adaptive_avg_pool2d`` has no family of its own: the ``avg_pool2d`` modules serve it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType, ModuleType

from tinyres.kernels import (
    batchnorm_numba,
    batchnorm_reference,
    batchnorm_relu_numba,
    batchnorm_relu_reference,
    conv_reference,
    direct_numba,
    direct_reference,
    im2col_numba,
    im2col_numpy,
    pool_numba,
    pool_reference,
    relu_numba,
    relu_reference,
    winograd_numba,
    winograd_reference,
)
from tinyres.kernels.sizes import Pair

TIERS = ("reference", "numpy", "numba")

# family -> tier -> module. The convolution's families are named "conv2d/<algorithm>".
KERNELS: dict[str, dict[str, ModuleType]] = {}

_tier: contextvars.ContextVar[str] = contextvars.ContextVar("tinyres_kernel_tier", default="numba")
# (name, tile): tile is Winograd's output tile size m (2 or 4), or None to choose by shape.
_algorithm: contextvars.ContextVar[tuple[str, int | None]] = contextvars.ContextVar(
    "tinyres_conv_algorithm", default=("auto", None)
)
# A learner's kernels (``tinyres.course.mine``): family -> module with the family's protocol,
# chosen before any tier. Empty outside a ``use_learner`` block.
_learner: contextvars.ContextVar[Mapping[str, ModuleType]] = contextvars.ContextVar(
    "tinyres_learner_kernels", default=MappingProxyType({})
)


# What a module of each family must provide: the functions its op calls. ``avg_pool2d``
# serves ``adaptive_avg_pool2d`` too (one module, two pairs of functions).
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "conv2d/im2col": ("forward", "backward"),
    "conv2d/winograd": ("forward", "backward", "with_tile"),
    "batch_norm": ("forward", "backward"),
    "batch_norm_relu": ("forward", "backward"),  # batch norm then ReLU, one op (ops.norm.BatchNormReLU)
    "max_pool2d": ("max_pool2d_forward", "max_pool2d_backward"),
    "avg_pool2d": ("avg_pool2d_forward", "avg_pool2d_backward",
                   "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward"),
    "relu": ("forward", "backward"),
}


def register(family: str, tier: str, module: ModuleType) -> None:
    """Make ``module`` the ``tier`` kernels of ``family`` (e.g. ``"conv2d/winograd"``).

    Checked here, not at the first forward: the tier, and that the module has every
    function of the family's protocol (``PROTOCOLS``; a new convolution algorithm
    ``"conv2d/<name>"`` follows im2col's).
    """
    if tier not in TIERS:
        raise ValueError(f"unknown kernel tier {tier!r}; expected one of {TIERS}")
    if family not in PROTOCOLS and not family.startswith("conv2d/"):
        raise ValueError(f"unknown kernel family {family!r}; expected one of {sorted(PROTOCOLS)} "
                         "or 'conv2d/<algorithm>'")
    needed = PROTOCOLS.get(family, PROTOCOLS["conv2d/im2col"])
    missing = [name for name in needed if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(f"{getattr(module, '__name__', module)!r} cannot serve {family!r}: it lacks "
                        f"{missing} (the family's protocol is {list(needed)})")
    KERNELS.setdefault(family, {})[tier] = module


def get_tier() -> str:
    """The tier ops use right now (in this thread / task)."""
    return _tier.get()


def set_tier(name: str) -> None:
    """Make ``name`` the tier for every op from now on, in this thread / task."""
    if name not in TIERS:
        raise ValueError(f"unknown kernel tier {name!r}; expected one of {TIERS}")
    _tier.set(name)


@contextlib.contextmanager
def _within(variable: contextvars.ContextVar, value: object) -> Iterator[None]:
    """Set ``variable`` to ``value`` inside a ``with`` block, then restore it."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def use_tier(name: str) -> contextlib.AbstractContextManager[None]:
    """Use tier ``name`` inside a ``with`` block, then restore the previous one."""
    if name not in TIERS:
        raise ValueError(f"unknown kernel tier {name!r}; expected one of {TIERS}")
    return _within(_tier, name)


def use_learner(modules: Mapping[str, ModuleType]) -> contextlib.AbstractContextManager[None]:
    """Inside a ``with`` block, ``select(family)`` returns ``modules[family]`` before any tier.

    ``tinyres.course`` adapts a learner's exercise functions to the family protocols
    (``docs/architecture.md``, "The learner's pieces"); the tier and algorithm stay as set.
    """
    unknown = sorted(set(modules) - set(KERNELS))
    if unknown:
        raise ValueError(f"unknown kernel family {', '.join(unknown)}; expected some of {sorted(KERNELS)}")
    return _within(_learner, MappingProxyType(dict(modules)))


def learner_serves(*families: str) -> bool:
    """Whether a learner's module stands in for any of ``families`` now (``use_learner``):
    a fused op whose pieces the learner wrote must run as those pieces."""
    return any(family in _learner.get() for family in families)


def algorithms() -> tuple[str, ...]:
    """The convolution algorithms one can ask for: ``"auto"`` and the registered ``"conv2d/<name>"``."""
    return ("auto", *sorted(f.split("/", 1)[1] for f in KERNELS if f.startswith("conv2d/")))


def get_algorithm() -> tuple[str, int | None]:
    """The convolution algorithm and Winograd tile in force (this thread / task), e.g. ``("auto", None)``."""
    return _algorithm.get()


def use_algorithm(name: str, tile: int | None = None) -> contextlib.AbstractContextManager[None]:
    """Run convolutions with algorithm ``name`` inside a ``with`` block (tests, lessons, benchmarks).

    ``tile`` fixes Winograd's output tile (2 for F(2x2, 3x3), 4 for F(4x4, 3x3)).
    """
    if name not in algorithms():
        raise ValueError(f"unknown convolution algorithm {name!r}; expected one of {algorithms()}")
    if tile is not None and (name != "winograd" or tile not in winograd_reference.MATRICES):
        raise ValueError(f"tile must be None, or 2 or 4 with 'winograd'; got tile={tile!r} for {name!r}")
    return _within(_algorithm, (name, tile))


def conv_algorithm(
    x_shape: tuple[int, ...] | None, w_shape: tuple[int, ...] | None, stride: Pair, dilation: Pair
) -> tuple[str, int | None]:
    """The algorithm, and Winograd's tile, for one convolution: the only place that decides.

    Winograd fits 3x3 kernels with stride 1 and no dilation; anything else runs im2col.
    ``"auto"`` picks F(4x4) in the Numba tier only for planes of at least 56x56 with 64 or
    more input and output channels (the first stage of the ImageNet ResNets). Measured on a
    quiet machine, forward + backward, 3 alternating rounds (benchmarks/README.md,
    "Winograd"): F(4x4) 80 ms against im2col's 117 on (8,64,56,56)->64, but slower or no
    faster on the CIFAR ResNets' layers (16-64 channels, 8x8-32x32 planes; a whole
    ResNet-20 step took 681 ms with F(4x4) there against 672 with im2col) and on
    (8,128,28,28)->128 (131 against 99).

    Direct convolution (undilated, any stride; ``"direct"`` forces it) is ``"auto"``'s
    choice for kernels up to 3x3 with at most 64 input and output channels: every layer
    of the CIFAR ResNets. Measured call by call on one thread under load (benchmarks/
    README.md, "Direct convolution"), forward + backward CPU time against the best other
    algorithm: 0.50-0.89x on those layers, but 1.05-1.3x on the wider ImageNet layers
    (128-256 channels, 1x1) and 1.46x on the 7x7 stem. Its compiled kernels are float32:
    a float64 layer it is chosen for runs im2col (inside ``direct_numba``).
    """
    name, tile = _algorithm.get()
    if name == "direct" and dilation == (1, 1):
        return name, None
    fits = w_shape is not None and tuple(w_shape[2:]) == (3, 3) and stride == (1, 1) and dilation == (1, 1)
    if name == "winograd" and fits:
        return name, tile
    large = (x_shape is not None and w_shape is not None and min(x_shape[1], w_shape[0]) >= 64
             and min(x_shape[2:]) >= 56)
    if name == "auto" and fits and large and _tier.get() == "numba":
        return "winograd", 4
    narrow = (x_shape is not None and w_shape is not None and max(x_shape[1], w_shape[0]) <= 64
              and max(w_shape[2:]) <= 3 and dilation == (1, 1))
    if name == "auto" and narrow and _tier.get() == "numba":
        return "direct", None
    return "im2col", None


def select(
    family: str,
    *,
    x_shape: tuple[int, ...] | None = None,
    w_shape: tuple[int, ...] | None = None,
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
) -> ModuleType:
    """The kernel module of ``family`` for the current tier (and, for ``"conv2d"``, algorithm).

    Called once in an op's forward; the op keeps the module for its backward, so a
    backward run outside the ``use_tier`` block of its forward uses the same kernels.
    A convolution passes its shapes, which ``conv_algorithm`` turns into an algorithm.
    """
    tile = None
    if family == "conv2d" and "conv2d/im2col" in _learner.get():
        return _learner.get()["conv2d/im2col"]  # the learner's convolution serves every layer
    if family == "conv2d":
        algorithm, tile = conv_algorithm(x_shape, w_shape, stride, dilation)
        family = f"conv2d/{algorithm}"
    if family in _learner.get():
        return _learner.get()[family]
    tiers = KERNELS[family]
    for tier in TIERS[TIERS.index(_tier.get()) :: -1]:  # the tier asked for, then simpler ones
        if tier in tiers:
            return tiers[tier] if tile is None else tiers[tier].with_tile(tile)
    raise LookupError(f"{family} has no kernels at tier {_tier.get()!r} or below; it has {sorted(tiers)}")


# One line per (family, tier): a new tier or convolution algorithm is one more line.
register("conv2d/im2col", "reference", conv_reference)
register("conv2d/im2col", "numpy", im2col_numpy)
register("conv2d/im2col", "numba", im2col_numba)
register("conv2d/winograd", "reference", winograd_reference)  # also the numpy tier's: the readable one
register("conv2d/winograd", "numba", winograd_numba)
register("conv2d/direct", "reference", direct_reference)  # also the numpy tier's: the readable one
register("conv2d/direct", "numba", direct_numba)  # float32; float64 runs im2col_numba inside
register("batch_norm", "reference", batchnorm_reference)
register("batch_norm", "numba", batchnorm_numba)
register("batch_norm_relu", "reference", batchnorm_relu_reference)
register("batch_norm_relu", "numba", batchnorm_relu_numba)
register("max_pool2d", "reference", pool_reference)
register("max_pool2d", "numba", pool_numba)
register("avg_pool2d", "reference", pool_reference)  # a Numba kernel measured no faster
register("relu", "reference", relu_reference)
register("relu", "numba", relu_numba)
