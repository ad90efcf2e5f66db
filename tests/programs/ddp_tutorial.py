"""DistributedDataParallel as PyTorch's "Getting Started with Distributed Data Parallel"
tutorial writes it (its torchrun version on the CPU back end "gloo"): a ToyModel wrapped in
DDP, MSE loss, SGD, and rank 0 saving the checkpoint. Launched as
``mpiexec -n 2 python ddp_tutorial.py OUT`` (tinyres) or ``torchrun --nproc-per-node 2``
(PyTorch). The data are one seeded global batch that each rank slices, so the result
can be compared with one process (``python ddp_tutorial.py OUT``) taking all of it."""

import sys

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.optim as optim
from torch.nn.parallel import DistributedDataParallel as DDP


class ToyModel(nn.Module):
    def __init__(self):
        super(ToyModel, self).__init__()
        self.net1 = nn.Linear(10, 10)
        self.relu = nn.ReLU()
        self.net2 = nn.Linear(10, 5)

    def forward(self, x):
        return self.net2(self.relu(self.net1(x)))


def demo_basic(checkpoint_path):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    world_size = dist.get_world_size()
    print(f"Start running basic DDP example on rank {rank}.")

    torch.manual_seed(0)
    model = ToyModel().double()
    ddp_model = DDP(model)

    loss_fn = nn.MSELoss()
    optimizer = optim.SGD(ddp_model.parameters(), lr=0.001)

    inputs = torch.randn(20, 10).double()
    labels = torch.randn(20, 5).double()
    per_rank = 20 // world_size
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    for step in range(3):
        optimizer.zero_grad()
        outputs = ddp_model(inputs[mine])
        loss_fn(outputs, labels[mine]).backward()
        optimizer.step()

    if rank == 0:
        torch.save(ddp_model.state_dict(), checkpoint_path)
    dist.barrier()
    dist.destroy_process_group()
    print(f"Finished running basic DDP example on rank {rank}.")


if __name__ == "__main__":
    demo_basic(sys.argv[1])
