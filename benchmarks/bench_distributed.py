"""Data-parallel training step: 2 MPI ranks (1 kernel thread each) against 1 process (2 threads).

ResNet-20 (shortcut A), float32, a global batch of 128 CIFAR-shaped images, SGD with momentum.
Variants, each in fresh processes, alternated over ``--rounds`` rounds:

- ``single``: one process, 2 kernel threads, batch 128;
- ``ddp``: ``mpiexec -n 2``, each rank 64 images, DDP (default buckets) with SyncBatchNorm;
- ``ddp-one-bucket``: the same with one bucket (bucket_cap_mb=100), so the all-reduce starts only
  after the whole backward: no overlap;
- ``ddp-bn-per-rank``: DDP with plain BatchNorm2d (no all-reduce in the batch norms);
- ``local``: ``mpiexec -n 2``, each rank 64 images with no communication at all (plain model):
  the compute a rank does, the floor of the ``ddp`` step.

Each rank also times a blocking all-reduce of the whole gradient (1.1 MB) on its own. What
the overlap hides = (ddp-one-bucket - ddp) step time; exposed communication = ddp - local, of
which the batch norms' all-reduces are ddp - ddp-bn-per-rank.

    python benchmarks/bench_distributed.py            # the table for benchmarks/README.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("single", "ddp", "ddp-one-bucket", "ddp-bn-per-rank", "local")


def worker(variant: str, out: str, steps: int, warmup: int) -> None:
    """One process (or one rank) of a variant: time `steps` training steps after `warmup`."""
    import tinyres as tr
    import tinyres.distributed as dist
    from tinyres import nn
    from tinyres.models import resnet20

    world, rank = 1, 0
    if variant != "single":
        dist.init_process_group("mpi")
        world, rank = dist.get_world_size(), dist.get_rank()
    tr.set_num_threads(2 if variant == "single" else 1)
    tr.manual_seed(0)
    model = resnet20()
    if variant in ("ddp", "ddp-one-bucket"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if variant.startswith("ddp"):
        cap = 100 if variant == "ddp-one-bucket" else None
        model = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=cap)
    opt = tr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(rank)
    x = tr.tensor(rng.standard_normal((128 // world, 3, 32, 32)).astype(np.float32))
    y = tr.tensor(rng.integers(0, 10, 128 // world))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for step in range(warmup + steps):
        if world > 1:
            dist.barrier()  # every rank starts the step together
        start = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if world > 1:
            dist.barrier()  # the step ends when the slowest rank's ends
        if step >= warmup:
            times.append(time.perf_counter() - start)
    result = {"step_s": statistics.median(times), "load": os.getloadavg()[0]}
    if world > 1:
        grads = np.ones(sum(p.numel() for p in model.parameters()), np.float32)
        allreduce = []
        for _ in range(25):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce_array(grads)
            allreduce.append(time.perf_counter() - start)
        result["allreduce_s"] = statistics.median(allreduce[5:])
        result["gradient_mb"] = grads.nbytes / 1e6
    if rank == 0:
        Path(out).write_text(json.dumps(result))


def launch(variant: str, steps: int, warmup: int) -> dict:
    out = Path(tempfile.mkdtemp()) / "result.json"
    command = [sys.executable, __file__, "--worker", variant, str(out), str(steps), str(warmup)]
    if variant != "single":
        mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"
        command = [mpiexec, "-n", "2", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, check=True, env=env, cwd=ROOT, timeout=1800)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        variant, out, steps, warmup = args.worker
        worker(variant, out, int(steps), int(warmup))
        return
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):  # alternated, so each variant sees the same mix of load
        for variant in VARIANTS:
            results[variant].append(launch(variant, args.steps, args.warmup))
            print(variant, results[variant][-1], flush=True)
    step = {v: statistics.median(r["step_s"] for r in rs) for v, rs in results.items()}
    loads = [r["load"] for rs in results.values() for r in rs]
    allreduce = statistics.median(r["allreduce_s"] for r in results["ddp"] + results["ddp-one-bucket"])
    print(f"\nResNet-20, float32, global batch 128; load average {min(loads):.1f}-{max(loads):.1f} on "
          f"{os.cpu_count()} cores; medians of {args.steps} steps after {args.warmup}, {args.rounds} rounds")
    print("| variant | step ms | img/s |\n|---|---|---|")
    for v in VARIANTS:
        print(f"| {v} | {step[v] * 1e3:.0f} | {128 / step[v]:.0f} |")
    efficiency = step["single"] / step["ddp"]
    print(f"\nscaling efficiency (1 process x 2 threads / 2 ranks x 1 thread): {efficiency:.2f}")
    size = results["ddp"][0]["gradient_mb"]
    print(f"blocking all-reduce of the {size:.2f} MB gradient: {allreduce * 1e3:.1f} ms")
    sync_bn = step["ddp"] - step["ddp-bn-per-rank"]
    print(f"synchronised batch norm (ddp - ddp-bn-per-rank): {sync_bn * 1e3:.0f} ms")
    print(f"exposed communication (ddp - local): {(step['ddp'] - step['local']) * 1e3:.0f} ms; "
          f"hidden by overlap (one bucket - ddp): {(step['ddp-one-bucket'] - step['ddp']) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
