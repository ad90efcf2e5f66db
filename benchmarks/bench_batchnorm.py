"""Benchmark batch norm, ReLU, add and max pooling (fwd+bwd): tiers next to PyTorch CPU.

    python benchmarks/bench_batchnorm.py                # the table for benchmarks/README.md
    python benchmarks/bench_batchnorm.py --only batch   # just the rows naming "batch"
    python benchmarks/bench_batchnorm.py --sizes        # ReLU/add by array size (FAST_SIZE)
    python benchmarks/bench_batchnorm.py --compile      # first call in a fresh process

Each row is one training step of the layer: forward, then backward with a fixed
upstream gradient. "reference" is the NumPy tier, "numba" the default. PyTorch runs in
its own process with its default threads. Figures are medians after warm-up calls,
so Numba's compilation (or loading from its cache) is never inside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit
from timing import load_note, median_seconds, positive_int, table

from tinyres.arguments import Parser  # one-line errors, as the tinyres command

ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, ROOT)

BN_SHAPE = (64, 64, 32, 32)  # issue 3: the widest CIFAR ResNet stage at batch 64


def layer_cases(lib) -> dict[str, tuple[tuple[int, ...], Callable]]:
    """name -> (input shape, f(lib, x, params) -> output); the same code for both libraries."""
    F = lib.nn.functional
    return {
        "batch_norm train (64,64,32,32)": (BN_SHAPE, lambda x, p: F.batch_norm(
            x, p["mean"], p["var"], p["weight"], p["bias"], training=True)),
        "batch_norm eval (64,64,32,32)": (BN_SHAPE, lambda x, p: F.batch_norm(
            x, p["mean"], p["var"], p["weight"], p["bias"], training=False)),
        "relu (64,64,32,32)": (BN_SHAPE, lambda x, p: F.relu(x)),
        "relu (64,16,32,32)": ((64, 16, 32, 32), lambda x, p: F.relu(x)),
        "add (64,64,32,32)": (BN_SHAPE, lambda x, p: x + p["other"]),
        "max_pool2d 3/2/1 (8,64,112,112)": ((8, 64, 112, 112), lambda x, p: F.max_pool2d(x, 3, 2, 1)),
        "max_pool2d 2/2/0 (64,64,32,32)": (BN_SHAPE, lambda x, p: F.max_pool2d(x, 2)),
    }


def make_step(lib, shape: tuple[int, ...], fn: Callable, seed: int = 0) -> Callable[[], None]:
    """One forward+backward of ``fn`` on float32 data, as a zero-argument callable."""
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    leaf = lambda a: lib.tensor(a, requires_grad=True)  # noqa: E731
    params = {
        "mean": lib.tensor(np.zeros(c, np.float32)),
        "var": lib.tensor(np.ones(c, np.float32)),
        "weight": leaf(rng.uniform(0.5, 1.5, c).astype(np.float32)),
        "bias": leaf(rng.standard_normal(c).astype(np.float32)),
        "other": leaf(rng.standard_normal(shape).astype(np.float32)),
    }
    x = leaf(x_np)
    upstream = lib.tensor(np.ones(fn(x, params).shape, np.float32))

    def step() -> None:
        x.grad = None
        fn(x, params).backward(upstream)

    return step


def time_cases(lib, repeats: int, only: str) -> dict[str, float]:
    return {
        name: median_seconds(make_step(lib, shape, fn), repeats=repeats, warmup=2)
        for name, (shape, fn) in layer_cases(lib).items()
        if only in name
    }


def time_tinyres(tier: str, repeats: int, only: str) -> dict[str, float]:
    import tinyres

    with tinyres.kernels.use_tier(tier):
        return time_cases(tinyres, repeats, only)


def time_torch(repeats: int, only: str) -> dict[str, float]:
    import torch

    results = time_cases(torch, repeats, only)
    results["threads"] = torch.get_num_threads()
    return results


def torch_in_subprocess(repeats: int, only: str) -> dict[str, float] | None:
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--torch-only", "--repeats", str(repeats), "--only", only],
            capture_output=True, text=True, check=True,
        )
    except subprocess.CalledProcessError as error:
        print(f"PyTorch run failed (is torch installed?): {error.stderr.strip()[-300:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_table(repeats: int, only: str) -> None:
    print(f"before: {load_note()}")
    torch_times = torch_in_subprocess(repeats, only)
    ours = {tier: time_tinyres(tier, repeats, only) for tier in ("reference", "numba")}
    rows = []
    for name in ours["numba"]:
        row = [name, f"{1000 * ours['reference'][name]:.2f}", f"{1000 * ours['numba'][name]:.2f}",
               f"{ours['reference'][name] / ours['numba'][name]:.2f}"]
        if torch_times:
            theirs = torch_times[name]
            row += [f"{1000 * theirs:.2f}", f"{ours['numba'][name] / theirs:.2f}"]
        else:
            row += ["-", "-"]
        rows.append(row)
    header = ["layer fwd+bwd, float32", "reference ms", "numba ms", "speed-up", "PyTorch ms",
              "numba / PyTorch"]
    print(table(header, rows))
    if torch_times:
        print(f"\nPyTorch threads: {torch_times['threads']}")
    print(f"after: {load_note()}")


@njit(nogil=True)
def relu_candidate(start, stop, x, out):
    """A Numba ReLU forward, measured against np.maximum and not adopted (see README)."""
    for i in range(start, stop):
        v = x[i]
        out[i] = 0 if v <= 0 else v


@njit(nogil=True)
def add_candidate(start, stop, a, b, out):
    """A Numba same-shape add, measured against NumPy's + and not adopted (see README)."""
    for i in range(start, stop):
        out[i] = a[i] + b[i]


def size_pairs(x: np.ndarray, g: np.ndarray) -> dict[str, tuple[Callable, Callable]]:
    """op -> (NumPy version, Numba kernel); only the ReLU backward kernel is in tinyres."""
    from tinyres.kernels import relu_numba
    from tinyres.kernels.threads import parallel_for

    z = np.maximum(x, np.float32(0))
    return {
        "relu fwd": (lambda: np.maximum(x, np.float32(0)),
                     lambda: parallel_for(relu_candidate, x.size, x, np.empty_like(x))),
        "relu bwd": (lambda: g * (z > 0), lambda: relu_numba.relu_backward(g, z)),
        "add": (lambda: x + g, lambda: parallel_for(add_candidate, x.size, x, g, np.empty_like(x))),
    }


def run_sizes(repeats: int) -> None:
    """ReLU and add, NumPy against the Numba kernel, by size: where does the kernel win?"""
    print(f"before: {load_note()}")
    rows = []
    for size in (1 << 12, 1 << 15, 1 << 18, 1 << 20, 1 << 22):
        rng = np.random.default_rng(0)
        x, g = (rng.standard_normal(size).astype(np.float32) for _ in range(2))
        for name, (numpy_fn, numba_fn) in size_pairs(x, g).items():
            a = median_seconds(numpy_fn, repeats=repeats, warmup=2)
            b = median_seconds(numba_fn, repeats=repeats, warmup=2)
            rows.append([str(size), name, f"{1e6 * a:.0f}", f"{1e6 * b:.0f}", f"{a / b:.2f}"])
    print(table(["elements", "op", "NumPy us", "Numba us", "NumPy / Numba"], rows))
    print(f"after: {load_note()}")


FIRST_CALL = """
import time
start = time.perf_counter()
import numpy as np
import tinyres
from tinyres.nn import functional as F
imported = time.perf_counter()
x = tinyres.tensor(np.ones((2, 3, 8, 8), dtype=np.float32), requires_grad=True)
y = F.max_pool2d(F.relu(F.batch_norm(x, None, None, training=True)), 2)
F.avg_pool2d(y + y, 2).sum().backward()
F.batch_norm(x, np.zeros(3, np.float32), np.ones(3, np.float32)).sum().backward()
done = time.perf_counter()
print(f"{imported - start:.2f} {done - imported:.2f}")
"""


def run_compile() -> None:
    """Cold cache: every kernel compiles; warm cache: a new process loads them from disk."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=ROOT)
        for state in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            print(f"{state} cache: import {out[0]} s, first batch_norm/relu/add/pools fwd+bwd "
                  f"(float32, train and eval) {out[1]} s")


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=9)
    parser.add_argument("--sizes", action="store_true", help="ReLU/add: NumPy vs Numba by size")
    parser.add_argument("--compile", action="store_true", help="first-call time, cold and warm cache")
    parser.add_argument("--only", default="", help="only the rows whose name contains this")
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_only:
        print(json.dumps(time_torch(args.repeats, args.only)))
    elif args.sizes:
        run_sizes(args.repeats)
    elif args.compile:
        run_compile()
    else:
        run_table(args.repeats, args.only)


if __name__ == "__main__":
    main()
