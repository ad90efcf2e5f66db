"""Linear layer forward + backward: tinyres (products on its own threads), tinyres with BLAS's own
threads (the products as they were before ``kernels.threads.matmul``), and PyTorch.

    python benchmarks/bench_linear.py --rounds 3

Each configuration runs in its own fresh process with the default environment (no thread
variable), the three in turn, ``rounds`` times; each process times ``y = linear(x, W, b)``
and ``y.backward(g)`` after 3 warm-up calls and prints the median wall and process CPU
milliseconds per size. The sizes: a CIFAR ResNet's classifier (batch 64, 64 -> 10) and two
layers large enough that OpenBLAS uses its threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import load_note, table

SIZES = [(64, 64, 10), (256, 1024, 1024), (1024, 2048, 2048)]  # (batch, in, out)
NAMES = ("tinyres", "tinyres, BLAS threads", "torch")


def measure(name: str) -> dict[str, list[float]]:
    """{size: [wall ms, CPU ms]} for one configuration, in this process."""
    if name == "torch":
        import torch as lib
    else:
        import tinyres as lib

        if name == "tinyres, BLAS threads":
            import tinyres.ops.linear

            tinyres.ops.linear.matmul = np.matmul  # NumPy's product, on OpenBLAS's own threads
    rng = np.random.default_rng(0)
    out = {}
    for batch, n_in, n_out in SIZES:
        def tensor(*shape, grad=True):
            return lib.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=grad)

        x, w, b, g = tensor(batch, n_in), tensor(n_out, n_in), tensor(n_out), tensor(batch, n_out, grad=False)
        repeats = max(5, min(300, int(3e9 / (6 * batch * n_in * n_out))))
        wall, cpu = [], []
        for k in range(repeats + 3):
            start, start_cpu = time.perf_counter(), time.process_time()
            lib.nn.functional.linear(x, w, b).backward(g)
            if k >= 3:
                wall.append(1000 * (time.perf_counter() - start))
                cpu.append(1000 * (time.process_time() - start_cpu))
            x.grad = w.grad = b.grad = None
        out[f"{batch}x{n_in}->{n_out}"] = [statistics.median(wall), statistics.median(cpu)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only)))
        return
    print(f"before: {load_note()}")
    runs: dict[str, list[dict]] = {name: [] for name in NAMES}
    for _ in range(args.rounds):
        for name in NAMES:
            done = subprocess.run([sys.executable, __file__, "--only", name], capture_output=True, text=True,
                                  check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"round done ({load_note()})", flush=True)
    rows = []
    for size in runs["torch"][0]:
        cells = [size]
        for name in NAMES:
            wall = statistics.median(r[size][0] for r in runs[name])
            cpu = statistics.median(r[size][1] for r in runs[name])
            cells.append(f"{wall:.2f} ({cpu:.2f})")
        rows.append(cells)
    print(table(["Linear fwd + bwd, ms wall (CPU), median", *NAMES], rows))
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
