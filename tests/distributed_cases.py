"""Programs that tests/test_distributed.py runs under ``mpiexec -n N`` (and, for the
reference, in one plain process): ``python -m tests.distributed_cases CASE OUT.npz [DTYPE]``.

Every case trains the same small network from the same seed on the same global batches;
rank 0 saves the final state dict (and the losses) to OUT.npz. Run alone (no mpiexec)
the same function is the one-process reference: a world of one takes the whole batch.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

import tinyres as torch
import tinyres.distributed as dist
from tinyres import nn
from tinyres.nn.parallel import DistributedDataParallel as DDP  # noqa: N817 (PyTorch tutorials' name)

GLOBAL_BATCH, STEPS = 64, 3
FAULTS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT, "raise": None}


def network(batch_norm: bool = True) -> nn.Module:
    """Two convolutions (with batch norm), pooling and a classifier: every layer kind DDP must carry."""
    norm = nn.BatchNorm2d if batch_norm else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=not batch_norm), norm(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=not batch_norm), norm(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def batches(dtype: type, steps: int = STEPS) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((GLOBAL_BATCH, 3, 8, 8)).astype(dtype), rng.integers(0, 10, GLOBAL_BATCH))
            for _ in range(steps)]


def shard(array: np.ndarray, rank: int, world: int) -> np.ndarray:
    size = len(array) // world
    return array[rank * size:(rank + 1) * size]


def run(case: str, dtype: type) -> dict[str, np.ndarray]:
    torch.set_num_threads(1)  # one core per rank: the ranks share the machine's cores
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    net = network(batch_norm=case != "no_sync")
    net = nn.SyncBatchNorm.convert_sync_batchnorm(net) if case == "sync_bn" else net
    if dtype == np.float64:
        net.double()
    model = DDP(net, bucket_cap_mb=0.001)  # several small buckets, so overlap and ordering are exercised
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for step, (images, labels) in enumerate(batches(dtype)):
        x, y = shard(images, rank, world), shard(labels, rank, world)
        optimizer.zero_grad()
        if case == "no_sync":  # two micro-batches per rank, one all-reduce
            half = len(x) // 2
            with model.no_sync():
                (loss_fn(model(torch.tensor(x[:half])), torch.tensor(y[:half])) / 2).backward()
            loss = loss_fn(model(torch.tensor(x[half:])), torch.tensor(y[half:])) / 2
        else:
            loss = loss_fn(model(torch.tensor(x)), torch.tensor(y))
        if case in FAULTS and rank == 1 and step == 1:  # rank 0 then waits for it in backward's all-reduce
            if case == "raise":
                raise RuntimeError("planted failure on rank 1")
            os.kill(os.getpid(), FAULTS[case])  # SIGKILL: a rank that dies without a word
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    state = {k: v.numpy().copy() for k, v in model.module.state_dict().items()}
    state["losses"] = np.array(losses)
    dist.destroy_process_group()
    return state


def reference(dtype: type, case: str = "sync_bn") -> dict[str, np.ndarray]:
    """One process, the whole batch of 64, plain BatchNorm2d: what the ranks must reproduce."""
    torch.manual_seed(0)
    net = network(batch_norm=case != "no_sync")
    if dtype == np.float64:
        net.double()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for images, labels in batches(dtype):
        optimizer.zero_grad()
        loss_fn(net(torch.tensor(images)), torch.tensor(labels)).backward()
        optimizer.step()
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    dtype = np.float64 if len(sys.argv) < 4 or sys.argv[3] == "float64" else np.float32
    result = run(case, dtype)
    if int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))) == 0:
        np.savez(out, **result)
