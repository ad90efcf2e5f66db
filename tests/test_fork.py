"""The kernels' threads (``tinyres.kernels.threads``): fork after a kernel, Python threads, the split.

The fork and thread cases run in a fresh interpreter each, in its own process group
with a timeout, since the failures they guard against are a child killed by a signal
(GNU OpenMP after fork), a pool that waits forever, or an abort of the whole process
(Numba's workqueue layer under several Python threads).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import tinyres as tr
from tinyres.kernels import threads

ROOT = Path(__file__).resolve().parents[1]

# Every kernel family on two threads: im2col and Winograd convolutions, batch norm in both
# layouts (channels last after a conv, NCHW otherwise) training and eval, max pooling,
# and a ReLU large enough for its compiled backward; forward and backward.
EVERY_KERNEL = textwrap.dedent("""
    import numpy as np
    import tinyres as tr
    import tinyres.nn.functional as F
    from tinyres import kernels
    from tinyres.kernels import relu_numba

    tr.set_num_threads(2)

    def every_kernel(seed=0):
        rng = np.random.default_rng(seed)
        def leaf(*shape):
            return tr.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
        results = []
        for algorithm in ("im2col", "winograd"):
            with kernels.use_algorithm(algorithm):
                x, w, g, b = leaf(4, 8, 12, 12), leaf(8, 8, 3, 3), leaf(8), leaf(8)
                y = F.conv2d(x, w, padding=1)
                y = F.batch_norm(y, tr.zeros(8), tr.ones(8), g, b, training=True)
                y = F.batch_norm(y, tr.zeros(8), tr.ones(8), g, b, training=False)
                y = F.max_pool2d(F.relu(y), 2)
                plain = F.batch_norm(leaf(4, 8, 5, 5), tr.zeros(8), tr.ones(8), g, b, training=True)
                (y * leaf(*y.shape)).sum().backward()
                (plain * leaf(*plain.shape)).sum().backward()
                results += [y, x.grad, w.grad, g.grad, b.grad, plain]
        z = leaf(relu_numba.FAST_SIZE)
        (F.relu(z) * leaf(relu_numba.FAST_SIZE)).sum().backward()
        return [r.detach().numpy() for r in results + [z.grad]]

    def same(a, b):
        return len(a) == len(b) and all(np.array_equal(p, q, equal_nan=True) for p, q in zip(a, b))
""")

FORK = EVERY_KERNEL + textwrap.dedent("""
    import os, signal
    parent = every_kernel()
    pid = os.fork()
    if pid == 0:
        signal.alarm(100)  # a hang in the child becomes SIGALRM, not a stuck test
        os._exit(0 if same(every_kernel(), parent) else 3)
    status = os.waitpid(pid, 0)[1]
    print(os.waitstatus_to_exitcode(status))
""")

POOL = EVERY_KERNEL + textwrap.dedent("""
    import multiprocessing

    def work(seed):
        return every_kernel(seed)

    if __name__ == "__main__":
        parent = [every_kernel(seed) for seed in range(3)]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            children = pool.map(work, range(3))
        print(all(same(c, p) for c, p in zip(children, parent)))
""")

THREADS = EVERY_KERNEL + textwrap.dedent("""
    import concurrent.futures
    alone = [every_kernel(seed) for seed in range(6)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as users:
        for _ in range(3):
            together = list(users.map(every_kernel, range(6)))
            assert all(same(t, a) for t, a in zip(together, alone)), "threads changed a result"
    tr.set_num_threads(1)
    assert all(same(every_kernel(seed), a) for seed, a in zip(range(6), alone)), "1 thread != 2 threads"
    from numba.np.ufunc import parallel
    assert not parallel._is_initialized, "a Numba threading layer started: the kernels must not need one"
    print("ok")
""")


def run_script(tmp_path: Path, code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``code`` as a script in its own process group; on timeout kill the group (pool workers too)."""
    script = tmp_path / "script.py"
    script.write_text(code)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"no answer in {timeout} s: a hang")
    assert process.returncode == 0, f"exit {process.returncode}: {err[-2000:]}"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_child_forked_after_every_kernel_runs_them_again_with_the_same_results(tmp_path):
    assert run_script(tmp_path, FORK).stdout.strip() == "0"  # the child's exit code: not a signal, not 3


def test_a_fork_pool_after_the_kernels_ran_finishes_with_the_parents_results(tmp_path):
    assert run_script(tmp_path, POOL).stdout.strip() == "True"


def test_python_threads_running_kernels_at_once_get_the_one_thread_results(tmp_path):
    assert run_script(tmp_path, THREADS).stdout.strip() == "ok"


# ---- the split itself ------------------------------------------------------------------------


@pytest.fixture
def thread_count():
    """Restore the thread count a test changes."""
    before = threads.get_num_threads()
    yield
    threads.set_num_threads(before)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 100])
def test_parallel_for_visits_every_index_once(thread_count, count, n):
    threads.set_num_threads(count)
    visits = np.zeros(n, int)
    lock = threading.Lock()

    def kernel(start, stop, out):
        with lock:
            out[start:stop] += 1

    threads.parallel_for(kernel, n, visits)
    assert visits.tolist() == [1] * n


def test_a_kernels_error_reaches_the_caller_after_every_run_finished(thread_count):
    threads.set_num_threads(3)
    finished = []

    def kernel(start, stop):
        if start == 0:
            raise ValueError("bad run")
        finished.append(start)

    with pytest.raises(ValueError, match="bad run"):
        threads.parallel_for(kernel, 3)
    assert sorted(finished) == [1, 2]


def test_a_kernel_run_from_a_pool_thread_runs_there_and_does_not_wait_for_itself(thread_count):
    threads.set_num_threads(2)  # a pool of one thread: a nested split waiting on it would never end
    seen = []

    def inner(start, stop):
        seen.append((start, stop))

    def outer(start, stop):
        threads.parallel_for(inner, 4)

    caller = threading.Thread(target=threads.parallel_for, args=(outer, 2), daemon=True)
    caller.start()
    caller.join(timeout=30)
    assert not caller.is_alive(), "a nested parallel_for waits for itself"
    # Whole in both: the pool thread and the caller each run their part of the outer split, so a
    # nested split in either runs directly instead of queueing behind the other's busy thread.
    assert sorted(seen) == [(0, 4), (0, 4)]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="positive int"):
        tr.set_num_threads(bad)


def test_the_thread_count_is_pytorchs_api():
    assert tr.get_num_threads() == threads.get_num_threads() >= 1
