"""Calm the two thread pools before NumPy loads (``tinyres/__init__.py`` imports this first).

tinyres runs on two pools of threads: Numba's OpenMP threads run the compiled kernels
(im2col, col2im, batch norm) and OpenBLAS's threads run the matrix products. A
convolution alternates between them many times per step. By default each pool keeps
its threads spinning for a while after its work is done, waiting for more, and on a
machine with few cores those spinning threads hold the cores that the *other* pool
needs next. Two settings make idle threads sleep at once:

- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep as soon as a parallel loop ends.
  Read when Numba starts its OpenMP pool (its first parallel kernel), so it counts
  unless a parallel Numba kernel already ran in this process.
- ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS threads sleep after 2**4 idle cycles (the
  default is 2**28, about 0.1 s). Read once, when NumPy loads OpenBLAS, so it only
  counts if ``import tinyres`` comes before ``import numpy`` -- otherwise set it in
  the shell.

``setdefault``: a value the user set in the environment wins. The measurements (1.5x
on a convolution's forward and backward, 2 cores) are in ``benchmarks/README.md``.

>>> import os
>>> all(name in os.environ for name in SETTINGS)
True
"""

import os

SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}

for _name, _value in SETTINGS.items():
    os.environ.setdefault(_name, _value)
