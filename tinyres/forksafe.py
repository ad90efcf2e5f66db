"""Fork after a tinyres kernel: a choice between fork safety and thread safety, made by the user.

Numba runs the parallel kernels (``prange``) on a threading layer it picks on the
first parallel call: TBB if installed, else OpenMP, else its own ``workqueue``. Here
(no TBB) that is GNU OpenMP, and GNU OpenMP is not fork-safe: a child forked after a
parallel kernel ran dies as soon as it runs one ("fork() called from a process
already using GNU OpenMP, this is unsafe", signal 15), and a fork-based
``multiprocessing.Pool`` (Linux's default before Python 3.14) waits forever for the
dead workers. Numba's ``workqueue`` layer is fork-safe (the child starts its own
threads) but not thread-safe: kernels called from several Python threads at once
abort the process (measured: ``tests/test_conv.py::
test_numba_tier_is_safe_from_several_python_threads`` dies with SIGABRT under it).

Neither layer is safe for both, and only TBB is (``pip install tbb``; Numba then
picks it by itself). So tinyres does not choose at import (that would be a
process-wide change of Numba's, and would trade one crash for another); a program
that forks after using tinyres, and does not call kernels from several threads,
calls ``use_fork_safe_threads()`` once before its first kernel. Speed is not the
question: ResNet-20 forward + backward, batch 64, median of 7 steps, two alternating
rounds on this 2-core machine (load average 19 from other jobs): OpenMP 10.7 s and
9.6 s, workqueue 9.2 s and 8.0 s.

What remains without TBB: under OpenMP (the default) use the ``spawn`` or
``forkserver`` start methods (``multiprocessing.get_context("spawn")``) for
processes started after a kernel ran. tinyres's own data loaders hold arrays in
memory and never start processes.
"""

from __future__ import annotations

import os

import numba
from numba.np.ufunc import parallel

FORK_SAFE_LAYER = "workqueue"


def use_fork_safe_threads() -> bool:
    """Select the fork-safe ``workqueue`` layer (not thread-safe: see above) if no layer was chosen
    (``NUMBA_THREADING_LAYER`` or ``numba.config``) and none is running yet; True if selected."""
    if "NUMBA_THREADING_LAYER" in os.environ or numba.config.THREADING_LAYER != "default":
        return False
    if parallel._is_initialized:  # a layer is already running; it cannot be swapped
        return False
    numba.config.THREADING_LAYER = FORK_SAFE_LAYER
    return True
