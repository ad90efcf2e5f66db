"""Benchmark whole models: a CIFAR ResNet-20 training step and a ResNet-50 forward.

    python benchmarks/bench_models.py              # the table for benchmarks/README.md
    python benchmarks/bench_models.py --profile    # where a ResNet-20 step spends its time
    python benchmarks/bench_models.py --step --rounds 3   # ResNet-20 step: PyTorch, auto, im2col, direct
    python benchmarks/bench_models.py --step-cpu --rounds 3   # the same, one thread each, CPU time
    python benchmarks/bench_models.py --fusion-ab --rounds 5  # BN-(add-)ReLU fused or not, alternating

Rows (float32, median of ``--repeats`` after warm-up, so Numba compilation is never
inside them):

- ResNet-20 (CIFAR, shortcut A) training step, batch 64 of 3x32x32: forward,
  cross-entropy, backward, ``optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)`` step;
- ResNet-50 inference forward (eval mode, no_grad) at (2, 3, 224, 224);
- peak memory of a ResNet-50 training forward+backward at (2, 3, 224, 224): resident
  set size above the level after building the model (``ru_maxrss``), each library
  in a fresh process.

The same step code runs on both libraries (``lib`` is ``tinyres`` or ``torch``);
PyTorch runs in its own process with its default threads, as the other scripts here.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, ROOT)
# tinyres runs in a default process, as a user's plain `python script.py` does: no variable, no call.

import numpy as np  # noqa: E402
from timing import load_note, median_seconds, positive_int, table  # noqa: E402

from tinyres.arguments import Parser  # noqa: E402 (one-line errors, as the tinyres command)

CIFAR_BATCH = (64, 3, 32, 32)
IMAGENET_BATCH = (2, 3, 224, 224)


def build(lib_name: str, model: str):
    """(lib, model) for ``tinyres`` or ``torch``; the PyTorch models are the test references."""
    if lib_name == "tinyres":
        import tinyres as lib
        from tinyres import models

        net = models.resnet20() if model == "resnet20" else models.resnet50()
    else:
        import torch as lib

        from tests.torch_models import TorchCifarResNet, torch_imagenet

        net = TorchCifarResNet(20) if model == "resnet20" else torch_imagenet("resnet50")
    return lib, net


def train_step_fn(lib_name: str):
    """A zero-argument ResNet-20 training step on a fixed batch."""
    lib, model = build(lib_name, "resnet20")
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal(CIFAR_BATCH).astype(np.float32))
    y = lib.tensor(rng.integers(0, 10, CIFAR_BATCH[0]))
    opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()

    def step() -> None:
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def forward_fn(lib_name: str):
    """A zero-argument ResNet-50 inference forward."""
    lib, model = build(lib_name, "resnet50")
    x = lib.tensor(np.random.default_rng(0).standard_normal(IMAGENET_BATCH).astype(np.float32))
    model.eval()

    def forward() -> None:
        with lib.no_grad():
            model(x)

    return forward


def rss_mb() -> float:
    """The current resident set size in MB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_memory_mb(lib_name: str, model_name: str = "resnet50") -> float:
    """Peak RSS of one training forward+backward above the built model's level.

    ResNet-50 at (2, 3, 224, 224), or a ResNet-20 step at batch 64 (its first step, so
    it also counts what a step allocates once: optimiser state, work buffers).
    """
    if model_name == "resnet20":
        step = train_step_fn(lib_name)
        before = rss_mb()
        step()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    lib, model = build(lib_name, model_name)
    x = lib.tensor(np.random.default_rng(0).standard_normal(IMAGENET_BATCH).astype(np.float32))
    model.train()
    before = rss_mb()
    model(x).sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before


def breakdown(repeats: int, algorithm: str) -> dict[str, float]:
    """Median ResNet-20 step and the seconds of it spent inside convolutions, per step.

    Times every ``Conv2d`` forward and backward (the whole op: layout copies, kernels,
    products) by wrapping the op's two methods in this process only.
    """
    import time

    import tinyres
    from tinyres.ops import conv

    spent = {"conv forward": 0.0, "conv backward": 0.0}

    def timed(method, name):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    conv.Convolution.forward = timed(conv.Convolution.forward, "conv forward")
    conv.Convolution.backward = timed(conv.Convolution.backward, "conv backward")
    with tinyres.kernels.use_algorithm(algorithm):
        step = train_step_fn("tinyres")
        seconds = median_seconds(step, repeats=repeats, warmup=2)
        for key in spent:
            spent[key] = 0.0
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        spent["loop"] = time.perf_counter() - start
    # The convolutions' share comes from this loop's mean, not the median above: on a busy
    # machine the two differ, and "everything else" must not come out negative.
    result = {key: value / repeats for key, value in spent.items()}
    result["step"] = seconds
    return result


def run_step(repeats: int, rounds: int) -> None:
    """The ResNet-20 step: PyTorch, tinyres auto, im2col only and direct only, in turn, ``rounds`` times."""
    print(f"before: {load_note()}")
    algorithms = ("auto", "im2col", "direct")
    runs: dict[str, list[dict]] = {"torch": [], **{name: [] for name in algorithms}}
    for _ in range(rounds):
        runs["torch"].append(in_subprocess("--only-step", "torch", "--repeats", str(repeats)))
        for algorithm in algorithms:
            runs[algorithm].append(in_subprocess("--breakdown", algorithm, "--repeats", str(repeats)))
    memory = {name: in_subprocess("--memory", lib, "--model", "resnet20")["peak_mb"]
              for name, lib in (("tinyres", "tinyres"), ("torch", "torch"))}
    torch_ms = 1000 * statistics.median(r["step"] for r in runs["torch"])
    rows = [["PyTorch", f"{torch_ms:.0f}", " / ".join(f"{1000 * r['step']:.0f}" for r in runs["torch"]),
             "", "", "1.00"]]
    for algorithm in algorithms:
        median = {k: 1000 * statistics.median(r[k] for r in runs[algorithm]) for k in runs[algorithm][0]}
        rows.append([f"tinyres, {algorithm}", f"{median['step']:.0f}",
                     " / ".join(f"{1000 * r['step']:.0f}" for r in runs[algorithm]),
                     f"{median['conv forward']:.0f} + {median['conv backward']:.0f}",
                     f"{median['loop'] - median['conv forward'] - median['conv backward']:.0f}",
                     f"{median['step'] / torch_ms:.2f}"])
    header = ["ResNet-20 step, batch 64, float32", "median ms", "rounds ms", "conv fwd + bwd ms (mean)",
              "everything else ms (mean)", "/ PyTorch"]
    print(table(header, rows))
    print(f"\npeak memory of the first step above the built model: tinyres {memory['tinyres']:.0f} MB, "
          f"PyTorch {memory['torch']:.0f} MB ({memory['tinyres'] / memory['torch']:.2f}x)")
    print(f"after: {load_note()}")


def step_cpu(name: str, repeats: int) -> dict[str, float]:
    """One thread, ``repeats`` ResNet-20 steps after 2: median wall and process CPU seconds.

    ``name`` is "torch" or a tinyres algorithm; the caller set one thread in the environment.
    """
    import time

    if name == "torch":
        import torch

        torch.set_num_threads(1)
        step = train_step_fn("torch")
        context = None
    else:
        import tinyres

        step = train_step_fn("tinyres")
        context = tinyres.kernels.use_algorithm(name)
    wall, cpu = [], []
    if context is not None:
        context.__enter__()
    for k in range(repeats + 2):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if k >= 2:
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def unfuse(keep: str) -> None:
    """Run the models in this process with fewer fusions: ``keep="none"``, every BN-(add-)ReLU as
    the separate ops; ``"bn_relu"``, only BN + ReLU fused, each block's BN + add + ReLU as ops."""
    from tinyres.models import blocks
    from tinyres.nn import fusion

    if keep == "none":
        fusion.fusable = lambda *args: False
    blocks.batch_norm_add_relu = lambda bn, relu, x, residual: relu(bn(x) + residual)


def run_fusion_ab(repeats: int, rounds: int) -> None:
    """No fusion, BN + ReLU fused, and BN (+ add) + ReLU fused: tinyres auto on one thread, fresh
    processes alternating, CPU ms per step, and the first step's peak memory of each."""
    print(f"before: {load_note()}")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    env.update(NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    variants = {"no fusion": ["--fusion", "none"], "BN+ReLU": ["--fusion", "bn_relu"], "all": []}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    memory: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, flags in variants.items():
            command = [sys.executable, __file__, "--only-step-cpu", "auto", "--repeats", str(repeats), *flags]
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            peak = in_subprocess("--memory", "tinyres", "--model", "resnet20", *flags)["peak_mb"]
            memory[name].append(peak)
        print(" | ".join(f"{name} {1000 * runs[name][-1]['cpu']:.0f} ms {memory[name][-1]:.0f} MB"
                         for name in variants), f"({load_note()})", flush=True)
    rows = [[name, f"{1000 * statistics.median(r['cpu'] for r in runs[name]):.0f}",
             " / ".join(f"{1000 * r['cpu']:.0f}" for r in runs[name]),
             f"{statistics.median(memory[name]):.0f}"] for name in variants]
    print(table(["ResNet-20 step, batch 64, one thread", "CPU ms (median)", "rounds CPU ms",
                 "peak MB (median)"], rows))
    print(f"after: {load_note()}")


def run_step_cpu(repeats: int, rounds: int) -> None:
    """The ResNet-20 step on one thread each (PyTorch, tinyres auto, im2col, direct), fresh
    processes in turn, ``rounds`` times: CPU time per step, which a busy machine disturbs far
    less than wall time."""
    print(f"before: {load_note()}")
    names = ("torch", "auto", "im2col", "direct")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    env.update(NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            command = [sys.executable, __file__, "--only-step-cpu", name, "--repeats", str(repeats)]
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        latest = " | ".join(f"{name} {1000 * runs[name][-1]['cpu']:.0f}" for name in names)
        print(latest, f"({load_note()})", flush=True)
    torch_cpu = statistics.median(r["cpu"] for r in runs["torch"])
    rows = []
    for name in names:
        cpu = statistics.median(r["cpu"] for r in runs[name])
        wall = statistics.median(r["wall"] for r in runs[name])
        rows.append(["PyTorch" if name == "torch" else f"tinyres, {name}", f"{1000 * cpu:.0f}",
                     " / ".join(f"{1000 * r['cpu']:.0f}" for r in runs[name]), f"{1000 * wall:.0f}",
                     f"{cpu / torch_cpu:.2f}"])
    header = ["ResNet-20 step, batch 64, one thread", "CPU ms (median)", "rounds CPU ms", "wall ms",
              "/ PyTorch"]
    print(table(header, rows))
    print(f"after: {load_note()}")


def products_fn():
    """A zero-argument run of the bare BLAS products of one ResNet-20 training step.

    Each convolution of the step as im2col does it: Y = cols @ W^T, dW^T = cols^T @ dY
    and (except for the first layer, whose input is the image) dcols = dY @ W, on
    ready-made float32 matrices. No im2col, col2im, batch norm, ReLU or Python: what
    the step would cost if everything but the convolutions' products were free.
    """
    import tinyres
    from tinyres import models

    model, geometry = models.resnet20(), []

    def record(module, inputs, output):
        N, C, _, _ = inputs[0].shape
        C_out, _, kH, kW = module.weight.shape
        geometry.append((N * output.shape[2] * output.shape[3], C * kH * kW, C_out, len(geometry) > 0))

    for module in model.modules():
        if isinstance(module, tinyres.nn.Conv2d):
            module.register_forward_hook(record)
    with tinyres.no_grad():
        model(tinyres.zeros(*CIFAR_BATCH))
    rng = np.random.default_rng(0)
    layers = []
    for rows, width, C_out, input_grad in geometry:
        cols = rng.standard_normal((rows, width), dtype=np.float32)
        w = rng.standard_normal((C_out, width), dtype=np.float32)
        dy = rng.standard_normal((rows, C_out), dtype=np.float32)
        layers.append((cols, w, dy, input_grad, np.empty_like(dy), np.empty((width, C_out), np.float32)))
    dcols = np.empty(max(layer[0].size for layer in layers), dtype=np.float32)

    def products() -> None:  # into reused outputs: no allocation or page faults timed
        for cols, w, dy, input_grad, y, dw_t in layers:
            np.matmul(cols, w.T, out=y)
            np.matmul(cols.T, dy, out=dw_t)
            if input_grad:
                np.matmul(dy, w, out=dcols[: cols.size].reshape(cols.shape))

    return products


def measure(lib_name: str, repeats: int) -> dict[str, float]:
    step = train_step_fn(lib_name)
    results = {"step": median_seconds(step, repeats=repeats, warmup=2)}
    if lib_name == "tinyres":
        results["products"] = median_seconds(products_fn(), repeats=repeats, warmup=2)
    forward = forward_fn(lib_name)
    results["forward"] = median_seconds(forward, repeats=max(3, repeats // 2), warmup=1)
    if lib_name == "torch":
        import torch

        results["threads"] = torch.get_num_threads()
    return results


def in_subprocess(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_table(repeats: int) -> None:
    print(f"before: {load_note()}")
    theirs = in_subprocess("--only", "torch", "--repeats", str(repeats))
    ours = in_subprocess("--only", "tinyres", "--repeats", str(repeats))
    memory = {lib: in_subprocess("--memory", lib)["peak_mb"] for lib in ("tinyres", "torch")}
    n_step, n_fwd = CIFAR_BATCH[0], IMAGENET_BATCH[0]
    rows = [
        ["ResNet-20 train step, batch 64, 3x32x32", f"{1000 * ours['step']:.0f}",
         f"{n_step / ours['step']:.0f}", f"{1000 * theirs['step']:.0f}", f"{n_step / theirs['step']:.0f}",
         f"{ours['step'] / theirs['step']:.2f}"],
        ["ResNet-20 step: the convolutions' bare BLAS products alone", f"{1000 * ours['products']:.0f}",
         "", "", "", f"{ours['products'] / theirs['step']:.2f}"],
        ["ResNet-50 forward (eval), (2,3,224,224)", f"{1000 * ours['forward']:.0f}",
         f"{n_fwd / ours['forward']:.1f}", f"{1000 * theirs['forward']:.0f}",
         f"{n_fwd / theirs['forward']:.1f}", f"{ours['forward'] / theirs['forward']:.2f}"],
        ["ResNet-50 fwd+bwd peak memory, (2,3,224,224)", f"{memory['tinyres']:.0f} MB", "",
         f"{memory['torch']:.0f} MB", "", f"{memory['tinyres'] / memory['torch']:.2f}"],
    ]
    header = ["float32", "tinyres ms", "tinyres img/s", "PyTorch ms", "PyTorch img/s", "tinyres / PyTorch"]
    print(table(header, rows))
    print(f"\nPyTorch threads: {theirs['threads']}")
    print(f"after: {load_note()}")


def profile(steps: int) -> None:
    """cProfile a few ResNet-20 steps (after warm-up) and print the top functions."""
    step = train_step_fn("tinyres")
    step()
    step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    print(f"{steps} ResNet-20 steps, batch 64; {load_note()}")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


def main() -> None:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--profile", action="store_true", help="profile the ResNet-20 step")
    parser.add_argument("--only", choices=["tinyres", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--memory", choices=["tinyres", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--model", default="resnet50", help=argparse.SUPPRESS)
    parser.add_argument("--step", action="store_true",
                        help="the ResNet-20 step only: PyTorch, tinyres auto, im2col and direct, alternating")
    parser.add_argument("--step-cpu", action="store_true",
                        help="the ResNet-20 step on one thread each, CPU time, alternating processes")
    parser.add_argument("--only-step-cpu", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--fusion-ab", action="store_true",
                        help="no fusion / BN+ReLU / BN(+add)+ReLU fused, one thread, alternating")
    parser.add_argument("--fusion", choices=["none", "bn_relu"], help=argparse.SUPPRESS)
    parser.add_argument("--only-step", choices=["torch"], help=argparse.SUPPRESS)
    parser.add_argument("--breakdown", choices=["auto", "im2col", "winograd", "direct"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fusion:
        unfuse(args.fusion)
    if args.only_step_cpu:
        print(json.dumps(step_cpu(args.only_step_cpu, args.repeats)))
    elif args.step_cpu:
        run_step_cpu(args.repeats, args.rounds)
    elif args.fusion_ab:
        run_fusion_ab(args.repeats, args.rounds)
    elif args.only:
        print(json.dumps(measure(args.only, args.repeats)))
    elif args.only_step:
        print(json.dumps({"step": median_seconds(train_step_fn(args.only_step), repeats=args.repeats,
                                                 warmup=2)}))
    elif args.breakdown:
        print(json.dumps(breakdown(args.repeats, args.breakdown)))
    elif args.memory:
        print(json.dumps({"peak_mb": peak_memory_mb(args.memory, args.model)}))
    elif args.step:
        run_step(args.repeats, args.rounds)
    elif args.profile:
        profile(5)
    else:
        run_table(args.repeats)


if __name__ == "__main__":
    main()
