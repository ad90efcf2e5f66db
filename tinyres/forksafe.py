"""Make ``os.fork`` after a tinyres kernel safe: Numba's ``workqueue`` threads, unless the user chose.

Numba runs the parallel kernels (``prange``) on a threading layer it picks on the
first parallel call: TBB if installed, else OpenMP, else its own ``workqueue``. Here
(no TBB) that is GNU OpenMP, and GNU OpenMP is not fork-safe: a child forked after a
parallel kernel ran dies as soon as it runs one ("fork() called from a process
already using GNU OpenMP, this is unsafe", signal 15), and a fork-based
``multiprocessing.Pool`` (Linux's default before Python 3.14) waits forever for the
dead workers. Numba's ``workqueue`` layer is fork-safe: the child starts its own.

Measured on this 2-core machine (ResNet-20 forward + backward, batch 64, median of 7
steps, two alternating rounds, load average 19 from other jobs): OpenMP 10.7 s and
9.6 s, workqueue 9.2 s and 8.0 s. So the fork-safe layer costs nothing here.

The choice is made at ``import tinyres``, so it applies before any kernel launches
threads. It is a process-wide setting of Numba's, so it is made only when the user
left the layer to Numba (no ``NUMBA_THREADING_LAYER`` in the environment, the
config at ``"default"``) and no parallel Numba code has run yet; set
``NUMBA_THREADING_LAYER=omp`` (or ``tbb``) to keep another layer.

What remains: if parallel Numba code ran before ``import tinyres`` on OpenMP, a
fork after it still kills the child; use the ``spawn`` or ``forkserver`` start
methods then (``multiprocessing.get_context("spawn")``). tinyres's own data loaders
hold arrays in memory and never start processes.
"""

from __future__ import annotations

import os

import numba
from numba.np.ufunc import parallel

FORK_SAFE_LAYER = "workqueue"


def use_fork_safe_threads() -> bool:
    """Select ``workqueue`` if the user has not chosen a layer and none is running; True if selected."""
    if "NUMBA_THREADING_LAYER" in os.environ or numba.config.THREADING_LAYER != "default":
        return False
    if parallel._is_initialized:  # a layer is already running; it cannot be swapped
        return False
    numba.config.THREADING_LAYER = FORK_SAFE_LAYER
    return True
