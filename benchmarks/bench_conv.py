"""Benchmark conv2d forward+backward: each tinyres tier next to PyTorch CPU.

    python benchmarks/bench_conv.py                 # the table for benchmarks/README.md
    python benchmarks/bench_conv.py --compile       # Numba compile time, cold and warm, all kernels too
    python benchmarks/bench_conv.py --torch-single  # add PyTorch with one thread
    python benchmarks/bench_conv.py --algorithms    # im2col, Winograd and direct side by side
    python benchmarks/bench_conv.py --kernels       # GFLOP/s of each kernel against the core's peak
    python benchmarks/bench_conv.py --interleaved   # the algorithms call by call, CPU time (busy machines)
    python benchmarks/bench_conv.py --accuracy      # float32 error against a float64 truth
    python benchmarks/bench_conv.py --ab REV        # direct's kernels: git revision REV against this tree

PyTorch runs in its own process with its default threads, so neither library's
thread pool sits spinning while the other one works. The loop reference is timed
only where it takes seconds, not minutes (see ``REFERENCE_LIMIT``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Run from a checkout without installing: the repository root holds the package.
ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, ROOT)
# Both libraries run in a default process, as a user's plain `python script.py` does: no
# variable, no call (tinyres's products run on its own pool, tinyres/kernels/threads.py).

import numpy as np  # noqa: E402
from timing import load_note, median_seconds, positive_int, table  # noqa: E402

from tinyres.arguments import Parser  # noqa: E402 (one-line errors, as the tinyres command)

# (N, C_in, H, W, C_out, k, stride, pad): the shapes of issue 3 (CIFAR and ImageNet ResNets).
SHAPES = [
    (64, 3, 32, 32, 16, 3, 1, 1),  # the CIFAR ResNets' first layer
    (64, 16, 32, 32, 16, 3, 1, 1),
    (64, 32, 16, 16, 32, 3, 1, 1),
    (64, 64, 8, 8, 64, 3, 1, 1),
    (64, 16, 32, 32, 32, 3, 2, 1),  # the CIFAR ResNets' strided 3x3 layers
    (64, 32, 16, 16, 64, 3, 2, 1),
    (8, 64, 56, 56, 64, 3, 1, 1),
    (8, 128, 28, 28, 128, 3, 1, 1),
    (8, 256, 14, 14, 256, 3, 2, 1),
    (8, 256, 56, 56, 64, 1, 1, 0),
    (8, 256, 56, 56, 512, 1, 2, 0),
    (8, 3, 224, 224, 64, 7, 2, 3),
]
# How many convolutions of each of SHAPES[0:6] a CIFAR ResNet-20 has (the first layer, then per stage).
RESNET20_LAYERS = {0: 1, 1: 6, 2: 1, 3: 5, 4: 1, 5: 5}
SELECTED: list[int] = []  # --shapes: indices into SHAPES to run (all when empty)


def chosen() -> list[tuple[int, tuple[int, ...]]]:
    """(index, shape) of the shapes to run: ``--shapes`` or all."""
    return [(i, shape) for i, shape in enumerate(SHAPES) if not SELECTED or i in SELECTED]


# The loop reference does one small matrix product per (output pixel, kernel offset).
REFERENCE_LIMIT = 30_000


def label(shape: tuple[int, ...]) -> str:
    return "({})".format(",".join(str(v) for v in shape))


def make_arrays(shape: tuple[int, ...], seed: int = 0):
    N, C, H, W, C_out, k, _, _ = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((C_out, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    return x, w


def reference_steps(shape: tuple[int, ...]) -> int:
    _, _, H, W, _, k, s, p = shape
    Ho = (H + 2 * p - k) // s + 1
    Wo = (W + 2 * p - k) // s + 1
    return Ho * Wo * k * k


# Columns of --algorithms: (label, algorithm, Winograd tile) for tinyres's Numba tier.
ALGORITHMS = [("im2col", "im2col", None), ("winograd F2", "winograd", 2), ("winograd F4", "winograd", 4),
              ("direct", "direct", None)]


def winograd_fits(shape: tuple[int, ...]) -> bool:
    return shape[5] == 3 and shape[6] == 1


def fits(algorithm: str, shape: tuple[int, ...]) -> bool:
    """Whether ``algorithm`` runs ``shape`` itself (im2col and direct run every undilated layer)."""
    return algorithm != "winograd" or winograd_fits(shape)


def gflop(shape: tuple[int, ...]) -> float:
    """GFLOP of one of the three products (forward, input or weight gradient): 2 N Ho Wo C_out C k^2."""
    N, C, H, W, C_out, k, s, p = shape
    return 2 * N * ((H + 2 * p - k) // s + 1) * ((W + 2 * p - k) // s + 1) * C_out * C * k * k / 1e9


def time_tinyres(shape: tuple[int, ...], tier: str, repeats: int, algorithm=("auto", None)) -> float:
    import tinyres
    from tinyres.nn import functional as F

    _, _, _, _, _, _, stride, pad = shape
    x_np, w_np = make_arrays(shape)
    x = tinyres.tensor(x_np, requires_grad=True)
    w = tinyres.tensor(w_np, requires_grad=True)

    def step():
        x.grad = w.grad = None
        y = F.conv2d(x, w, stride=stride, padding=pad)
        y.backward(upstream)

    with tinyres.kernels.use_tier(tier), tinyres.kernels.use_algorithm(*algorithm):
        upstream = np.ones(F.conv2d(x, w, stride=stride, padding=pad).shape, dtype=np.float32)
        return median_seconds(step, repeats=repeats, warmup=2)


def relative_errors(got: list[np.ndarray], truth: list[np.ndarray]) -> list[float]:
    """max |got - truth| / max |truth| for the output, dx and dw."""
    return [float(np.abs(g - t).max() / np.abs(t).max()) for g, t in zip(got, truth)]


def tinyres_outputs(shape: tuple[int, ...], dtype, algorithm=("auto", None)) -> list[np.ndarray]:
    """Output, dx, dw of one conv2d under ``algorithm``, for a random upstream gradient."""
    import tinyres
    from tinyres.nn import functional as F

    *_, stride, pad = shape
    x_np, w_np = (a.astype(dtype) for a in make_arrays(shape))
    x, w = tinyres.tensor(x_np, requires_grad=True), tinyres.tensor(w_np, requires_grad=True)
    with tinyres.kernels.use_algorithm(*algorithm):
        y = F.conv2d(x, w, stride=stride, padding=pad)
        y.backward(np.random.default_rng(1).standard_normal(y.shape).astype(dtype))
    return [y.detach().numpy().astype(np.float64), x.grad.numpy().astype(np.float64),
            w.grad.numpy().astype(np.float64)]


def torch_errors(shape: tuple[int, ...]) -> list[float]:
    """PyTorch's own float32 error (output, dx, dw) against its float64 result on the same case."""
    import torch

    *_, stride, pad = shape
    results = []
    for dtype in (torch.float64, torch.float32):
        x_np, w_np = make_arrays(shape)
        x = torch.tensor(x_np, dtype=dtype, requires_grad=True)
        w = torch.tensor(w_np, dtype=dtype, requires_grad=True)
        y = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
        y.backward(torch.tensor(np.random.default_rng(1).standard_normal(tuple(y.shape)), dtype=dtype))
        results.append([t.detach().double().numpy() for t in (y, x.grad, w.grad)])
    return relative_errors(results[1], results[0])


def run_accuracy() -> None:
    """float32 error of each algorithm and of PyTorch, against a float64 truth (tinyres im2col)."""
    header = ["shape (N,C,H,W,C_out,k,s,p)", *(f"{name} y / dx / dw" for name, _, _ in ALGORITHMS),
              "PyTorch y / dx / dw"]
    rows = []
    for index, shape in chosen():
        truth = tinyres_outputs(shape, np.float64, ("im2col", None))
        row = [label(shape)]
        for _, name, tile in ALGORITHMS:
            if not fits(name, shape):
                row.append("-")
                continue
            errors = relative_errors(tinyres_outputs(shape, np.float32, (name, tile)), truth)
            row.append(" / ".join(f"{e:.1e}" for e in errors))
        theirs = in_process_of_torch(["--torch-accuracy", str(index)])
        row.append(" / ".join(f"{e:.1e}" for e in theirs) if theirs else "-")
        rows.append(row)
        print(" | ".join(row), flush=True)
    print()
    print(table(header, rows))
    print("\nmax |float32 - float64 truth| / max |truth|; tinyres's truth is its float64 im2col "
          "(equal to the loop reference to 1e-10), PyTorch's its own float64 result")


def in_process_of_torch(arguments: list[str], threads: int | None = None):
    """Run this script with ``arguments`` in a fresh process with PyTorch's default settings."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    try:
        out = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True,
                             check=True, env=env)
    except subprocess.CalledProcessError as error:
        print(f"PyTorch run failed (is torch installed?): {error.stderr.strip()[-300:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_algorithms(repeats: int, rounds: int) -> None:
    """Each shape: PyTorch, then tinyres's Numba tier with each algorithm, ``rounds`` times in turn.

    GFLOP/s = the three products' 3 x 2 N Ho Wo C_out C k^2 operations over the wall time of
    forward + backward (both threads; ``--kernels`` has each kernel against one core's peak).
    """
    print(f"before: {load_note()}")
    header = ["shape (N,C,H,W,C_out,k,s,p)", "PyTorch ms", "auto ms", "auto / PyTorch",
              *(f"{name} ms" for name, _, _ in ALGORITHMS), "best / PyTorch", "direct / PyTorch",
              "PyTorch GFLOP/s", "direct GFLOP/s"]
    rows = []
    for index, shape in chosen():
        runs: dict[str, list[float]] = {"PyTorch": [], "auto": [], **{name: [] for name, _, _ in ALGORITHMS}}
        for _ in range(rounds):
            theirs = torch_in_subprocess(index, repeats)
            if theirs:
                runs["PyTorch"].append(theirs["seconds"])
            runs["auto"].append(time_tinyres(shape, "numba", repeats))
            for name, algorithm, tile in ALGORITHMS:
                if fits(algorithm, shape):
                    runs[name].append(time_tinyres(shape, "numba", repeats, (algorithm, tile)))
        median = {k: 1000 * statistics.median(v) for k, v in runs.items() if v}
        ops = 3 * gflop(shape)
        row = [label(shape), f"{median.get('PyTorch', float('nan')):.1f}", f"{median['auto']:.1f}"]
        row.append(f"{median['auto'] / median['PyTorch']:.2f}" if "PyTorch" in median else "-")
        row += [f"{median[name]:.1f}" if name in median else "-" for name, _, _ in ALGORITHMS]
        best = min(median[name] for name, _, _ in ALGORITHMS if name in median)
        row.append(f"{best / median['PyTorch']:.2f}" if "PyTorch" in median else "-")
        row.append(f"{median['direct'] / median['PyTorch']:.2f}" if "PyTorch" in median else "-")
        row.append(f"{1000 * ops / median['PyTorch']:.0f}" if "PyTorch" in median else "-")
        row.append(f"{1000 * ops / median['direct']:.0f}")
        rows.append(row)
        print(" | ".join(row), f"({load_note()})", flush=True)
    print()
    print(table(header, rows))
    print(f"\nmedian of {rounds} alternating rounds, each the median of {repeats} calls; forward+backward, "
          "float32; auto = the default choice (tinyres.kernels.conv_algorithm)")
    print(f"after: {load_note()}")


def time_kernels(shape: tuple[int, ...], module, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall s, process CPU s) medians of each kernel of a convolution module's array functions.

    The input gradient is timed as backward with it minus backward without it.
    """
    import time

    *_, stride, pad = shape
    x, w = make_arrays(shape)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # channels last, as in a network
    args = ((stride, stride), (pad, pad), (1, 1))
    y = module.conv2d_forward(x, w, None, *args)
    g = np.ascontiguousarray(np.ones_like(y).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    calls = {"forward": lambda: module.conv2d_forward(x, w, None, *args),
             "weight": lambda: module.conv2d_backward(g, x, w, *args, False, False),
             "both": lambda: module.conv2d_backward(g, x, w, *args, True, False)}
    out = {}
    for name, call in calls.items():
        call()
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start)
        out[name] = (statistics.median(wall), statistics.median(cpu))
    out["input"] = tuple(max(b - a, 1e-9) for a, b in zip(out["weight"], out.pop("both")))
    return out


def time_torch_cpu(shape: tuple[int, ...], repeats: int) -> dict[str, float]:
    """PyTorch's forward+backward on one thread (``torch.set_num_threads(1)``): wall and CPU seconds.

    Channels-last input as tinyres's, so both read the same layout.
    """
    import time

    import torch

    torch.set_num_threads(1)
    *_, stride, pad = shape
    x_np, w_np = make_arrays(shape)
    x = torch.tensor(x_np).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.tensor(w_np).contiguous(memory_format=torch.channels_last).requires_grad_()

    def step():
        x.grad = w.grad = None
        y = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
        y.backward(torch.ones_like(y))

    step()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def matmul_ceiling(repeats: int = 5) -> tuple[float, float]:
    """(GFLOP/s wall, per CPU second) of NumPy's float32 1024^3 matrix product on one BLAS thread."""
    import time

    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    wall, cpu = [], []
    with threadpool_limits(1, user_api="blas"):
        a @ a
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.thread_time()
            a @ a
            cpu.append(time.thread_time() - start_cpu)
            wall.append(time.perf_counter() - start)
    return 2 * 1024**3 / min(wall) / 1e9, 2 * 1024**3 / min(cpu) / 1e9


def run_kernels(repeats: int) -> None:
    """GFLOP/s of each kernel (forward, input gradient, weight gradient) of direct and im2col.

    Two figures each: by wall time (both threads; suffers from other jobs on the machine)
    and per second of the process's CPU time (the cycles it got, on any of its threads),
    which compares with one core's peak even on a busy machine.
    """
    import tinyres
    from tinyres.kernels import direct_numba, im2col_numba
    from tinyres.kernels.simd import fma_peak

    peak_wall, peak_cpu = fma_peak()
    blas_wall, blas_cpu = matmul_ceiling()
    print(f"before: {load_note()}; threads {tinyres.get_num_threads()}")
    print(f"one core's peak (simd.fma_peak): {peak_cpu:.0f} GFLOP/s per CPU second "
          f"({peak_wall:.0f} by wall time); "
          f"NumPy float32 1024^3 matmul, one thread: {blas_cpu:.0f} ({blas_wall:.0f})")
    header = ["shape (N,C,H,W,C_out,k,s,p)", *(f"{m} {k} ms / GFLOP/s / per CPU s"
              for m in ("direct", "im2col") for k in ("forward", "input grad", "weight grad")),
              "direct fwd+bwd per CPU s", "PyTorch 1 thread fwd+bwd per CPU s"]
    rows = []
    for index, shape in chosen():
        row = [label(shape)]
        cpu_total = 0.0
        for module in (direct_numba, im2col_numba):
            times = time_kernels(shape, module, repeats)
            for kernel in ("forward", "input", "weight"):
                wall, cpu = times[kernel]
                row.append(f"{1000 * wall:.1f} / {gflop(shape) / wall:.0f} / {gflop(shape) / cpu:.0f}")
                cpu_total += cpu if module is direct_numba else 0.0
        row.append(f"{3 * gflop(shape) / cpu_total:.0f}")
        theirs = in_process_of_torch(["--torch-cpu", str(index), "--repeats", str(repeats)])
        row.append(f"{3 * gflop(shape) / theirs['cpu']:.0f}" if theirs else "-")
        rows.append(row)
        print(" | ".join(row), f"({load_note()})", flush=True)
    print()
    print(table(header, rows))
    print(f"\nmedian of {repeats} calls after one; float32, channels-last input and gradient; "
          f"peak {peak_cpu:.0f} GFLOP/s per core; after: {load_note()}")


def direct_at(revision: str):
    """``direct_numba`` as it was at git ``revision``, a module of its own beside this tree's.

    Its ``direct_reference`` comes from the same revision; the rest of tinyres (``simd``,
    ``threads``, ``buffers``) is this tree's. Compiled into a fresh temporary folder.
    """
    import importlib.util

    folder = Path(tempfile.mkdtemp(prefix="tinyres-direct-"))
    for name in ("direct_reference", "direct_numba"):
        done = subprocess.run(["git", "-C", ROOT, "show", f"{revision}:tinyres/kernels/{name}.py"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"--ab: no tinyres/kernels/{name}.py at {revision!r}: {done.stderr.strip()}")
        text = done.stdout.replace("from tinyres.kernels.direct_reference import",
                                   "from then_reference import")
        (folder / f"then_{name.split('_')[1]}.py").write_text(text)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("then_numba", folder / "then_numba.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["then_numba"] = module
    spec.loader.exec_module(module)
    return module


def run_ab(revision: str, repeats: int) -> None:
    """Direct's kernels at ``revision`` (A) against this tree's (B) in one process on one thread,
    call by call in turn: GFLOP/s per CPU second, medians of ``repeats``. On a busy machine the
    two see the same load at the same moments, so their ratio holds where separate runs' do not."""
    import time

    from tinyres.kernels import direct_numba, threads

    threads.set_num_threads(1)
    then = direct_at(revision)
    print(f"A = {revision}, B = this tree; one thread; before: {load_note()}")
    header = ["shape (N,C,H,W,C_out,k,s,p)", "forward A / B", "input grad A / B", "weight grad A / B"]
    rows, step = [], [0.0, 0.0]
    shapes = chosen() if SELECTED else list(enumerate(SHAPES))[:6]
    for index, shape in shapes:
        *_, stride, pad = shape
        x, w = make_arrays(shape)
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        args = ((stride, stride), (pad, pad), (1, 1))
        y = direct_numba.conv2d_forward(x, w, None, *args)
        g = np.ascontiguousarray(np.ones_like(y).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        medians = {}
        for kernel in ("forward", "weight", "both"):
            seconds: list[list[float]] = [[], []]
            for k in range(repeats + 1):
                for side, module in enumerate((then, direct_numba)):
                    start = time.thread_time()
                    if kernel == "forward":
                        module.conv2d_forward(x, w, None, *args)
                    else:
                        module.conv2d_backward(g, x, w, *args, kernel == "both", False)
                    if k:  # the first call of each compiles or warms up
                        seconds[side].append(time.thread_time() - start)
            medians[kernel] = [statistics.median(s) for s in seconds]
        medians["input"] = [max(b - a, 1e-9) for a, b in zip(medians["weight"], medians.pop("both"))]
        kernels = ("forward", "weight") if index == 0 else ("forward", "input", "weight")
        for side in (0, 1):  # a network never asks for its input image's gradient
            step[side] += RESNET20_LAYERS.get(index, 0) * sum(medians[k][side] for k in kernels)
        row = [label(shape)] + [" / ".join(f"{gflop(shape) / t:.0f}" for t in medians[kernel])
                                for kernel in ("forward", "input", "weight")]
        rows.append(row)
        print(" | ".join(row), f"({load_note()})", flush=True)
    print()
    print(table(header, rows))
    print(f"\nGFLOP/s per CPU second, median of {repeats} calls each after one; after: {load_note()}")
    if set(RESNET20_LAYERS) <= {index for index, _ in shapes}:
        print(f"ResNet-20's convolutions at batch 64 (these shapes, each as often as in the network): "
              f"A {1000 * step[0]:.1f} ms, B {1000 * step[1]:.1f} ms of CPU per training step")


def run_interleaved(repeats: int) -> None:
    """Each shape's algorithms called in turn, one forward+backward each, ``repeats`` times.

    For a busy machine: the algorithms alternate call by call, so a slow spell falls on
    all of them, and each call's process CPU time is kept beside its wall time (the
    cycles it got, whatever else ran). Whatever ``tinyres.set_num_threads`` says.
    """
    import time

    import tinyres
    from tinyres.nn import functional as F

    print(f"before: {load_note()}; threads {tinyres.get_num_threads()}")
    header = ["shape (N,C,H,W,C_out,k,s,p)", *(f"{name} CPU ms (wall)" for name, _, _ in ALGORITHMS),
              "direct / best other (CPU)"]
    rows = []
    for _, shape in chosen():
        *_, stride, pad = shape
        x_np, w_np = make_arrays(shape)
        x, w = tinyres.tensor(x_np, requires_grad=True), tinyres.tensor(w_np, requires_grad=True)
        upstream = np.ones(F.conv2d(x, w, stride=stride, padding=pad).shape, dtype=np.float32)
        steps = {}
        for name, algorithm, tile in ALGORITHMS:
            if fits(algorithm, shape):
                def step(algorithm=algorithm, tile=tile, x=x, w=w, stride=stride, pad=pad, upstream=upstream):
                    x.grad = w.grad = None
                    with tinyres.kernels.use_algorithm(algorithm, tile):
                        F.conv2d(x, w, stride=stride, padding=pad).backward(upstream)
                step()
                steps[name] = step
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        wall: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                step()
                cpu[name].append(time.process_time() - start_cpu)
                wall[name].append(time.perf_counter() - start)
        median = {name: 1000 * statistics.median(v) for name, v in cpu.items()}
        row = [label(shape)]
        row += [f"{median[name]:.1f} ({1000 * statistics.median(wall[name]):.1f})" if name in median else "-"
                for name, _, _ in ALGORITHMS]
        others = [v for name, v in median.items() if name != "direct"]
        row.append(f"{median['direct'] / min(others):.2f}")
        rows.append(row)
        print(" | ".join(row), f"({load_note()})", flush=True)
    print()
    print(table(header, rows))
    print(f"\nmedian of {repeats} calls per algorithm, alternating call by call; forward+backward, float32; "
          f"after: {load_note()}")


def time_products(shape: tuple[int, ...], repeats: int) -> float:
    """The three bare BLAS products of an im2col convolution, on ready-made matrices.

    Y = cols @ W^T, dW^T = cols^T @ dY and dcols = dY @ W with cols (N*Ho*Wo, k*k*C):
    no im2col, col2im, copies or Python, so this is the floor of any im2col design
    on NumPy's BLAS.
    """
    from tinyres.kernels.conv_reference import output_size

    N, C, H, W, C_out, k, stride, pad = shape
    rows = N * output_size(H, k, stride, pad, 1) * output_size(W, k, stride, pad, 1)
    rng = np.random.default_rng(0)
    cols = rng.standard_normal((rows, k * k * C), dtype=np.float32)
    w = rng.standard_normal((C_out, k * k * C), dtype=np.float32)
    dy = rng.standard_normal((rows, C_out), dtype=np.float32)
    y, dcols = np.empty_like(dy), np.empty_like(cols)

    def products():
        np.matmul(cols, w.T, out=y)
        cols.T @ dy
        np.matmul(dy, w, out=dcols)

    return median_seconds(products, repeats=repeats, warmup=2)


def time_torch(shape: tuple[int, ...], repeats: int) -> dict[str, float]:
    import torch

    _, _, _, _, _, _, stride, pad = shape
    x_np, w_np = make_arrays(shape)
    x = torch.tensor(x_np, requires_grad=True)
    w = torch.tensor(w_np, requires_grad=True)
    upstream = torch.ones(torch.nn.functional.conv2d(x, w, stride=stride, padding=pad).shape)

    def step():
        x.grad = w.grad = None
        torch.nn.functional.conv2d(x, w, stride=stride, padding=pad).backward(upstream)

    return {"seconds": median_seconds(step, repeats=repeats, warmup=2), "threads": torch.get_num_threads()}


# Thread settings tinyres may apply to itself (see benchmarks/README.md); PyTorch runs without them.
THREAD_VARIABLES = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "NUMBA_THREADING_LAYER")


def torch_in_subprocess(index: int, repeats: int, threads: int | None = None) -> dict[str, float] | None:
    """PyTorch on SHAPES[index] in a fresh process with its default settings (and threads)."""
    return in_process_of_torch(["--torch-only", str(index), "--repeats", str(repeats)], threads)


def run_table(tiers: list[str], repeats: int, single: bool, rounds: int) -> None:
    """One row per shape; PyTorch runs right before tinyres, so both see the same machine load.

    With ``rounds`` > 1 the PyTorch process, the Numba tier and the bare products take
    turns that many times and each reports the median of its rounds, so a slow spell
    of the machine falls on all of them instead of on one.
    """
    print(f"before: {load_note()}; a default process (no variable, no call)")
    header = ["shape (N,C,H,W,C_out,k,s,p)", *(f"{t} ms" for t in tiers), "PyTorch ms", "ratio",
              "products ms", "products / PyTorch"]
    if single:
        header.append("PyTorch 1 thread ms")
    rows = []
    threads = None
    for index, shape in chosen():
        torch_runs, numba_runs, product_runs = [], [], []
        for _ in range(rounds):
            run = torch_in_subprocess(index, repeats)
            if run:
                torch_runs.append(run["seconds"])
                threads = run["threads"]
            if "numba" in tiers:
                numba_runs.append(time_tinyres(shape, "numba", repeats))
            product_runs.append(time_products(shape, repeats))
        theirs = {"seconds": statistics.median(torch_runs)} if torch_runs else None
        row = [label(shape)]
        for tier in tiers:
            if tier == "reference" and reference_steps(shape) > REFERENCE_LIMIT:
                row.append("skipped")
                continue
            seconds = statistics.median(numba_runs) if tier == "numba" else time_tinyres(shape, tier, repeats)
            row.append(f"{1000 * seconds:.1f}")
        fastest = float(row[tiers.index("numba") + 1]) if "numba" in tiers else None
        if theirs:
            row.append(f"{1000 * theirs['seconds']:.1f}")
            row.append(f"{fastest / (1000 * theirs['seconds']):.2f}" if fastest else "-")
        else:
            row += ["-", "-"]
        floor = statistics.median(product_runs)
        row.append(f"{1000 * floor:.1f}")
        row.append(f"{floor / theirs['seconds']:.2f}" if theirs else "-")
        if single:
            one = torch_in_subprocess(index, repeats, threads=1)
            row.append(f"{1000 * one['seconds']:.1f}" if one else "-")
        rows.append(row)
        print(" | ".join(row), flush=True)
    print()
    print(table(header, rows))
    print(f"\nPyTorch threads: {threads}; ratio = numba tier / PyTorch, forward+backward; "
          "products = the three bare BLAS products alone (the floor of im2col on NumPy's BLAS)")
    print(f"after: {load_note()}")


FIRST_CALL = """
import time
start, cpu_start = time.perf_counter(), time.process_time()
import numpy as np
import tinyres
from tinyres.nn import functional as F
imported = time.perf_counter()
for dtype in {dtypes}:
    x = tinyres.tensor(np.ones((2, 3, 8, 8), dtype=dtype), requires_grad=True)
    w = tinyres.tensor(np.ones((4, 3, 3, 3), dtype=dtype), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    if hasattr(F, "batch_norm"):
        y = F.batch_norm(y, None, None, training=True)
    y.sum().backward()
done, cpu = time.perf_counter(), time.process_time() - cpu_start
print(f"{{imported - start:.2f}} {{done - imported:.2f}} {{hasattr(F, 'batch_norm')}} {{cpu:.2f}}")
"""


EVERY_KERNEL = """
import time
import numpy as np
import tinyres
from tinyres.nn import functional as F
start = time.perf_counter()
for dtype in {dtypes}:
    model = tinyres.models.resnet18(num_classes=10).to(dtype)
    x = tinyres.randn(2, 3, 32, 32, dtype=dtype, requires_grad=True)
    F.cross_entropy(model(x), tinyres.tensor([1, 2])).backward()
    F.relu(tinyres.randn(64, 64, 64, 64, dtype=dtype, requires_grad=True)).sum().backward()
    F.avg_pool2d(x, 2).sum().backward()
    with tinyres.kernels.use_algorithm("direct"):  # its kernels, whatever "auto" picks
        F.conv2d(x, tinyres.randn(5, 3, 3, 3, dtype=dtype), padding=1).sum().backward()
print(f"{{time.perf_counter() - start:.2f}}")
"""


def run_compile() -> None:
    """Cold cache: every kernel compiles; warm cache: a new process loads them from disk.

    Wall time suffers from other processes on the machine; the process's CPU time
    (import included) does not, so both are printed.
    """
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=ROOT)
        for dtypes, name in (("[np.float32, np.float64]", "both dtypes"), ("[np.float32]", "float32")):
            for state in ("cold", "warm"):
                if state == "cold":
                    # A cache dir per measurement: cold must not reuse the previous row's files.
                    env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir=cache)
                code = FIRST_CALL.format(dtypes=dtypes)
                out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                     text=True, check=True).stdout.split()
                print(f"{state} cache, {name}: import {out[0]} s, first conv2d"
                      f"{'+batch_norm' if out[2] == 'True' else ''} fwd+bwd {out[1]} s "
                      f"(wall); CPU time of the whole process {out[3]} s")
        # Every kernel of the library: a ResNet-18 step (conv incl. the few-channel im2col,
        # batch norm both layouts, ReLU, max pooling), a large ReLU and average pooling.
        for dtypes, name in (("[np.float32, np.float64]", "both dtypes"), ("[np.float32]", "float32")):
            env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir=cache)
            seconds = []
            for _ in ("cold", "warm"):
                code = EVERY_KERNEL.format(dtypes=dtypes)
                done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                      text=True, check=True)
                seconds.append(float(done.stdout.split()[-1]))
            print(f"every kernel, {name}: first ResNet-18 step + ReLU + pools {seconds[0]:.2f} s cold, "
                  f"{seconds[1]:.2f} s warm: about {seconds[0] - seconds[1]:.1f} s of compilation")


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="alternate PyTorch and the Numba tier this many times per shape")
    parser.add_argument("--tiers", default="reference,numpy,numba")
    parser.add_argument("--compile", action="store_true", help="measure Numba compile time")
    parser.add_argument("--torch-single", action="store_true",
                        help="add a column: PyTorch with one thread (steadier on a busy machine)")
    parser.add_argument("--algorithms", action="store_true",
                        help="im2col, Winograd F2/F4 and direct against PyTorch (Numba tier)")
    parser.add_argument("--kernels", action="store_true",
                        help="GFLOP/s of each direct and im2col kernel against one core's FMA peak")
    parser.add_argument("--accuracy", action="store_true", help="float32 error against a float64 truth")
    parser.add_argument("--torch-only", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--torch-accuracy", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shapes", default="", help="comma-separated indices into SHAPES (default: all)")
    parser.add_argument("--interleaved", action="store_true",
                        help="the algorithms call by call, CPU time beside wall time (for a busy machine)")
    parser.add_argument("--ab", metavar="REV",
                        help="direct's kernels at git revision REV against this tree's, in turn, one thread")
    parser.add_argument("--torch-cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = [i for i in args.shapes.split(",") if i]
    if not all(i.isdigit() and int(i) < len(SHAPES) for i in shapes):
        parser.error(f"--shapes takes indices 0..{len(SHAPES) - 1} into SHAPES, got {args.shapes!r}")
    if not set(args.tiers.split(",")) <= {"reference", "numpy", "numba"}:
        parser.error(f"--tiers takes reference, numpy and numba, got {args.tiers!r}")
    SELECTED.extend(int(i) for i in shapes)
    if args.torch_cpu is not None:
        print(json.dumps(time_torch_cpu(SHAPES[args.torch_cpu], args.repeats)))
    elif args.torch_only is not None:
        print(json.dumps(time_torch(SHAPES[args.torch_only], args.repeats)))
    elif args.torch_accuracy is not None:
        print(json.dumps(torch_errors(SHAPES[args.torch_accuracy])))
    elif args.accuracy:
        run_accuracy()
    elif args.ab:
        run_ab(args.ab, args.repeats)
    elif args.algorithms:
        run_algorithms(args.repeats, args.rounds)
    elif args.kernels:
        run_kernels(args.repeats)
    elif args.interleaved:
        run_interleaved(args.repeats)
    elif args.compile:
        run_compile()
    else:
        run_table(args.tiers.split(","), args.repeats, args.torch_single, args.rounds)


if __name__ == "__main__":
    main()
