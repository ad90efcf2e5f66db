"""Public kernel functions called directly with buffers that do not fit: a clear error, never
a read or write out of bounds. Run in a subprocess, so a crash shows as a signal, not a dead suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each call, unchecked, indexes far outside one of its arrays.
SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from tinyres.kernels import batchnorm_numba, columns_numba, im2col_numba, pool_numba, relu_numba

    x = np.ones((2, 8, 8, 3))                      # NHWC
    tiny = np.ones((4, 27))                         # far fewer rows than 2*8*8 fields
    calls = {
        "im2col_nhwc": lambda: columns_numba.im2col_nhwc(x, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8, tiny),
        "im2col_nhwc_rows": lambda: columns_numba.im2col_nhwc_rows(x, 3, 3, 1, 1, 1, 1, 8, 8, tiny),
        "im2col_nhwc_sizes": lambda: columns_numba.im2col_nhwc(x, 3, 3, 1, 1, 1, 1, 1, 1, 80, 80, tiny),
        "col2im_nhwc": lambda: columns_numba.col2im_nhwc(tiny, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8, x),
        "conv2d_backward": lambda: im2col_numba.conv2d_backward(
            np.ones((2, 4, 2, 2)), np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3)), (1, 1), (1, 1), (1, 1)),
        "max_pool_backward": lambda: pool_numba.max_pool2d_backward(
            np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 10**9, dtype=np.int64), (1, 1, 4, 4)),
        "relu_backward": lambda: relu_numba.relu_backward(np.ones(1000), np.ones(3)),
        "batch_norm_short_gamma": lambda: batchnorm_numba.train_forward(
            np.ones((2, 64, 5)), np.ones(1), np.zeros(64), 1e-5),
        "batch_norm_backward": lambda: batchnorm_numba.batch_norm_backward(
            np.ones((2, 3, 5)), np.ones((2, 3, 5)), np.zeros(3), np.ones(3), np.ones(1), True),
    }
    for name, call in calls.items():
        try:
            call()
        except (ValueError, TypeError) as error:
            print(name, "refused:", error)
        else:
            print(name, "ACCEPTED")
    """
)


def test_kernels_refuse_buffers_that_do_not_fit():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, f"exit {out.returncode} (a negative code is a signal): {out.stderr[-1500:]}"
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 9 and all(" refused: kernel argument " in line for line in lines), out.stdout
