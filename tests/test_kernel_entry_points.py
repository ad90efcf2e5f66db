"""Public kernel functions called directly with buffers that do not fit: a clear error, never
a read or write out of bounds. Run in a subprocess, so a crash shows as a signal, not a dead suite.

The functions to call are derived, not listed by hand: every public function defined in a
compiled module the kernel registry (``tinyres.kernels.KERNELS``) uses, or in a compiled
module one of those imports. A new kernel function without a case here fails
``test_every_public_kernel_function_has_a_case``.
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from tinyres import kernels

ROOT = Path(__file__).resolve().parent.parent

# Functions that hand no buffer to a compiled loop, and why they need no case.
NO_BUFFERS = {
    "im2col_numba.kernel_layout": "NumPy transposes only; no compiled loop reads its input",
    "im2col_numba.prepare": "kernel_layout on x only; the loops run in conv2d_forward, which has a case",
    "relu_numba.forward": "a NumPy ufunc into a buffer it makes of x's own shape; no compiled loop",
}

# Each call, unchecked, indexes far outside one of its arrays.
SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from tinyres.kernels import batchnorm_numba, columns_numba, im2col_numba, pool_numba, relu_numba
    from tinyres.kernels import batchnorm_relu_numba
    from tinyres.kernels import direct_numba, winograd_numba

    x = np.ones((2, 8, 8, 3))                      # NHWC
    tiny = np.ones((4, 27))                         # far fewer rows than 2*8*8 fields
    bad_w = np.ones((4, 5, 3, 3))                   # 5 input channels for a 3-channel input
    x32, w32 = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)  # direct's compiled dtype
    bad_w32 = np.ones((4, 5, 3, 3), np.float32)
    calls = {
        "columns_numba.im2col_nhwc": lambda: columns_numba.im2col_nhwc(x, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8, tiny),
        "columns_numba.im2col_nhwc_rows": lambda: columns_numba.im2col_nhwc_rows(
            x, 3, 3, 1, 1, 1, 1, 8, 8, tiny),
        "columns_numba.im2col_nhwc sizes": lambda: columns_numba.im2col_nhwc(
            x, 3, 3, 1, 1, 1, 1, 1, 1, 80, 80, tiny),
        "columns_numba.col2im_nhwc": lambda: columns_numba.col2im_nhwc(tiny, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8, x),
        "columns_numba.columns": lambda: columns_numba.columns(x, (3, 3), (1, 1), (1, 1), (1, 1), 80, 80),
        "columns_numba.columns_buffer": lambda: columns_numba.columns_buffer(-5, 3, np.float64),
        "im2col_numba.conv2d_forward": lambda: im2col_numba.conv2d_forward(
            np.ones((2, 3, 8, 8)), bad_w, None, (1, 1), (1, 1), (1, 1)),
        "im2col_numba.conv2d_backward": lambda: im2col_numba.conv2d_backward(
            np.ones((2, 4, 2, 2)), np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3)), (1, 1), (1, 1), (1, 1)),
        "im2col_numba.forward": lambda: im2col_numba.forward(
            np.ones((2, 3, 8, 8)), bad_w, None, (1, 1), (1, 1), (1, 1)),
        "winograd_numba.conv2d_forward": lambda: winograd_numba.conv2d_forward(
            np.ones((2, 3, 8, 8)), bad_w, None, (1, 1), (1, 1), (1, 1)),
        "winograd_numba.conv2d_backward": lambda: winograd_numba.conv2d_backward(
            np.ones((2, 4, 8, 8)), np.ones((2, 3, 8, 8)), bad_w, (1, 1), (1, 1), (1, 1)),
        "direct_numba.conv2d_forward": lambda: direct_numba.conv2d_forward(
            x32, bad_w32, None, (1, 1), (1, 1), (1, 1)),
        "direct_numba.conv2d_backward": lambda: direct_numba.conv2d_backward(
            np.ones((2, 4, 2, 2), np.float32), x32, w32, (1, 1), (1, 1), (1, 1)),
        "direct_numba.forward": lambda: direct_numba.forward(x32, bad_w32, None, (1, 1), (1, 1), (1, 1)),
        "direct_numba.backward": lambda: direct_numba.backward(
            np.ones((2, 4, 2, 2), np.float32),
            direct_numba.forward(x32, w32, None, (1, 1), (1, 1), (1, 1))[1], True, True),
        "pool_numba.max_pool2d_forward": lambda: pool_numba.max_pool2d_forward(
            np.ones((1, 1, 4, 4)), (9, 9), (1, 1), (0, 0), (1, 1)),
        "pool_numba.max_pool2d_backward": lambda: pool_numba.max_pool2d_backward(
            np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 10**9, dtype=np.int64), (1, 1, 4, 4)),
        "relu_numba.relu_backward": lambda: relu_numba.relu_backward(np.ones(1000), np.ones(3)),
        "relu_numba.backward": lambda: relu_numba.backward(np.ones(1000), np.ones(3)),
        "batchnorm_numba.train_forward": lambda: batchnorm_numba.train_forward(
            np.ones((2, 64, 5)), np.ones(1), np.zeros(64), 1e-5),
        "batchnorm_numba.eval_forward": lambda: batchnorm_numba.eval_forward(
            np.ones((2, 64, 5)), np.zeros(64), np.ones(64), np.ones(1), np.zeros(64)),
        "batchnorm_numba.batch_norm_backward": lambda: batchnorm_numba.batch_norm_backward(
            np.ones((2, 3, 5)), np.ones((2, 3, 5)), np.zeros(3), np.ones(3), np.ones(1), True),
        "batchnorm_relu_numba.forward": lambda: batchnorm_relu_numba.forward(
            np.ones((2, 64, 5)), np.ones(1), np.zeros(64), 1e-5),
        "batchnorm_relu_numba.forward residual": lambda: batchnorm_relu_numba.forward(
            np.ones((2, 5, 64)).transpose(0, 2, 1), np.ones(64), np.zeros(64), 1e-5, None,
            np.ones((2, 64, 1))),
        "batchnorm_relu_numba.backward": lambda: batchnorm_relu_numba.backward(
            np.ones(1000),
            batchnorm_relu_numba.forward(np.ones((2, 3, 5)), np.ones(3), np.zeros(3), 1e-5)[1]),
    }
    for name, call in calls.items():
        try:
            call()
        except (ValueError, TypeError) as error:
            print(name, "| refused:", error)
        else:
            print(name, "| ACCEPTED")
    """
)


def compiled_modules() -> set[ModuleType]:
    """The registry's Numba modules and the Numba modules they import from tinyres.kernels."""
    found = {m for tiers in kernels.KERNELS.values() for m in tiers.values() if m.__name__.endswith("_numba")}
    for module in list(found):
        found |= {v for v in vars(module).values()
                  if inspect.ismodule(v) and v.__name__.startswith("tinyres.kernels.")
                  and v.__name__.endswith("_numba")}
        found |= {sys.modules[f.__module__] for f in vars(module).values()
                  if inspect.isfunction(f) and f.__module__.startswith("tinyres.kernels.")
                  and f.__module__.endswith("_numba")}
    return found


def public_kernel_functions() -> set[str]:
    names = set()
    for module in compiled_modules():
        short = module.__name__.rsplit(".", 1)[1]
        names |= {f"{short}.{name}" for name, f in vars(module).items()
                  if inspect.isfunction(f) and f.__module__ == module.__name__ and not name.startswith("_")}
    return names


@functools.cache
def run_script() -> tuple[str, ...]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, f"exit {out.returncode} (a negative code is a signal): {out.stderr[-1500:]}"
    return tuple(out.stdout.strip().splitlines())


def test_every_public_kernel_function_has_a_case():
    cases = {line.split(" | ")[0].split(" ")[0] for line in run_script()}
    wanted = public_kernel_functions() - set(NO_BUFFERS)
    assert wanted, "no compiled kernel modules found in the registry"
    missing = sorted(wanted - cases)
    assert not missing, f"public kernel functions with no out-of-bounds case in this file: {missing}"


def test_kernels_refuse_buffers_that_do_not_fit():
    lines = run_script()
    expected = SCRIPT.count('": lambda')
    assert len(lines) == expected, (expected, lines)
    accepted = [line for line in lines if "| refused:" not in line]
    assert not accepted, accepted
