"""tinyres owns the threads its work runs on: no BLAS worker thread is busy during a step.

A plain ``python script.py`` (no environment variable, no call) must run at full speed, so
the BLAS products inside tinyres's kernels run on tinyres's own pool with BLAS on one
thread (``tinyres.kernels.threads.single_threaded_blas``), and the user's own NumPy
products keep the user's BLAS setting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import tinyres as tr
from tinyres.kernels import im2col_numba, threads

ROOT = Path(__file__).resolve().parents[1]


def blas_threads() -> int:
    """NumPy's BLAS thread count (Numba may load SciPy's OpenBLAS too, which tinyres never calls)."""
    (numpys,) = [lib for lib in threadpool_info() if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]
    return numpys["num_threads"]


def test_the_users_blas_setting_is_back_after_a_kernel_and_one_thread_inside():
    before = blas_threads()
    inside = []
    with threads.single_threaded_blas():
        inside.append(blas_threads())
    x, w = np.ones((4, 3, 8, 8)), np.ones((5, 3, 3, 3))
    im2col_numba.conv2d_backward(np.ones((4, 5, 8, 8)), x, w, (1, 1), (1, 1), (1, 1))
    assert inside == [1]
    assert blas_threads() == before


def test_two_threads_entering_and_leaving_in_crossed_order_restore_the_setting_once():
    before = blas_threads()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with threads.single_threaded_blas():
            a_in.set()
            b_in.wait(10)
        a_out.set()  # A left first, while B is still inside

    def b():
        a_in.wait(10)
        with threads.single_threaded_blas():
            b_in.set()
            a_out.wait(10)
            seen["b inside after a left"] = blas_threads()

    workers = [threading.Thread(target=f) for f in (a, b)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(20)
    assert seen == {"b inside after a left": 1}
    assert blas_threads() == before


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [((16, 8, 12, 12), 3, 1), ((16, 8, 12, 12), 3, 2), ((16, 8, 6, 6), 1, 1)])
def test_convolution_gives_the_same_numbers_on_one_and_two_threads(dtype, shape):
    (N, C, H, W), k, s = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((6, C, k, k)).astype(dtype)
    p = (k // 2, k // 2)
    results = []
    for count in (1, 2):
        saved = tr.get_num_threads()
        tr.set_num_threads(count)
        try:
            y = im2col_numba.conv2d_forward(x, w, None, (s, s), p, (1, 1))
            dx, dw, _ = im2col_numba.conv2d_backward(np.cos(y), x, w, (s, s), p, (1, 1))
        finally:
            tr.set_num_threads(saved)
        results.append((y, dx, dw))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


MATMUL_SHAPES = [((600, 33), (33, 70)), ((3, 300, 20), (20, 9)), ((2, 1, 260, 8), (3, 8, 5)),
                 ((300, 17), (17,)), ((2, 300, 5), (5,)), ((17,), (17, 4)), ((40, 6), (6, 5)),
                 ((0, 3), (3, 2)), ((5, 0), (0, 2))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("a_shape", "b_shape"), MATMUL_SHAPES)
def test_matmul_on_the_pool_is_numpys_product_with_the_same_numbers_on_one_and_two_threads(dtype, a_shape,
                                                                                          b_shape):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    b_t = np.asfortranarray(b)  # the ops pass transposed views (W.T): a layout BLAS reads in place
    before, results = blas_threads(), []
    for count in (1, 2):
        saved = tr.get_num_threads()
        tr.set_num_threads(count)
        try:
            results.append((threads.matmul(a, b), threads.matmul(a, b_t)))
        finally:
            tr.set_num_threads(saved)
    expected = a @ b
    tolerance = 1e-12 if dtype == np.float64 else 1e-4
    for got in (*results[0], *results[1]):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance * max(1, a.shape[-1]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert blas_threads() == before  # the user's own products keep the user's setting


STEP = textwrap.dedent(
    """
    import json, os, threading, time
    import tinyres, tinyres.nn.functional as F
    from tinyres import models

    def cpu_by_thread():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    tinyres.manual_seed(0)
    if MODEL == "resnet20":
        model, x = models.resnet20(10), tinyres.randn(32, 3, 32, 32)
    else:  # a Linear large enough that OpenBLAS would use its threads (a classifier's stays on one)
        model, x = tinyres.nn.Sequential(tinyres.nn.Linear(1024, 1024), tinyres.nn.ReLU(),
                                         tinyres.nn.Linear(1024, 10)), tinyres.randn(256, 1024)
    opt = tinyres.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    y = tinyres.randint(0, 10, (len(x),))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # compile (or load the cache), start the pool
    before = cpu_by_thread()
    for _ in range(4):
        step()
    after = cpu_by_thread()
    ours = {t.native_id for t in threading.enumerate()
            if t is threading.main_thread() or t.name.startswith("tinyres-kernel")}
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    from threadpoolctl import threadpool_info
    print(json.dumps({"ours": sum(v for t, v in used.items() if t in ours),
                      "others": {str(t): v for t, v in used.items() if t not in ours},
                      "threadpools": threadpool_info()}))
    """
)


@pytest.mark.parametrize("model", ["resnet20", "mlp"])
def test_no_thread_outside_tinyres_pool_is_busy_during_a_training_step(model):
    # A clean environment: none of the thread variables a user might have set.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "NUMBA_CACHE_DIR") if key in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    program = f"MODEL = {model!r}\n{STEP}"
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    busy = {tid: seconds for tid, seconds in report["others"].items() if seconds > 0.05 * report["ours"]}
    assert not busy, (
        f"threads outside tinyres's pool used CPU during the steps: {busy} s "
        f"(tinyres's threads: {report['ours']:.2f} s); thread pools: {report['threadpools']}"
    )
