"""``tinyres.tune()``: kept so that scripts written for earlier versions still run; it does nothing.

Earlier versions asked for two process-wide settings to run at full speed: glibc's
``mallopt`` (keep freed memory) and ``OPENBLAS_THREAD_TIMEOUT=4`` in the shell (idle BLAS
threads sleep). Both jobs are now done inside tinyres, for tinyres's own work only, so a
plain ``python script.py`` runs at full speed and the rest of the process is untouched:

- **Threads**: tinyres's matrix products run on its own kernel pool with BLAS on one
  thread each (``tinyres.kernels.threads.single_threaded_blas``), so no BLAS worker
  thread wakes up and spins against the pool; the user's own NumPy products keep the
  user's BLAS setting.
- **Memory**: the kernels' large arrays come from memory the previous step freed
  (``tinyres.kernels.buffers``, a small caching allocator as PyTorch's).

The measurements are in benchmarks/README.md ("Nothing to set").

>>> import tinyres
>>> tinyres.tune()
{}
"""

from __future__ import annotations


def tune() -> dict[str, bool]:
    """Do nothing and say so (an empty dict: no setting applied); see the module's docstring."""
    return {}
