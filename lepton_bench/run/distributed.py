"""Data parallelism for one run on several devices, under ``torchrun``.

``torchrun --nproc_per_node N -m lepton_bench run ...`` starts N processes. Each builds the same
model from the same seed (and takes rank 0's weights to be sure), draws the same *global* batch
of every task (so augmentation and length bucketing match a single process), trains on its
1/N shard of it, and averages the gradients with one ``all_reduce`` per step before clipping —
what DistributedDataParallel does, done by hand because a multi-task step runs several forward
passes and, for the gradient aggregators, several partial backward passes before the gradients
are complete, which DDP's hooks do not allow. The gradient aggregators aggregate the Jacobian
averaged over ranks (the Jacobian of the global batch), so every rank applies the same update;
weightings whose state grows from each process's own losses (DWA, FAMO, GradNorm) are refused.
Only rank 0 evaluates and writes the record. Backends: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    """The torchrun world (WORLD_SIZE, RANK, LOCAL_RANK), or a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> torch.device:
    """Join the process group; on CUDA each process takes the GPU of its local rank."""
    if not world.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def finish(world: World) -> None:
    """Leave the process group together: the other ranks wait for rank 0's test pass, then every
    process tears gloo/NCCL down before exiting (a rank exiting alone can abort in its destructor)."""
    if world.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def check_batch_sizes(world: World, batch_sizes: dict[str, int]) -> None:
    bad = {t: b for t, b in batch_sizes.items() if b % world.size}
    if world.active and bad:
        raise ConfigError(f"with {world.size} processes every global batch size must divide by "
                          f"{world.size}; not {', '.join(f'{t}={b}' for t, b in bad.items())}")


def broadcast_parameters(world: World, tensors: list[torch.Tensor]) -> None:
    if world.active:
        for t in tensors:
            dist.broadcast(t.data, src=0)


def average_gradients(world: World, params: list[torch.Tensor]) -> None:
    """One all_reduce over all gradients (flattened), divided by the world size."""
    if not world.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world.size
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(synced)


def mean_over_ranks(world: World, t: torch.Tensor) -> torch.Tensor:
    """``t`` averaged over ranks, in place (the same shape on every rank)."""
    if world.active:
        dist.all_reduce(t)
        t /= world.size
    return t


def average(world: World, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-task scalars averaged over ranks (same keys on every rank)."""
    if not world.active or not values:
        return values
    names = sorted(values)
    stacked = mean_over_ranks(world, torch.stack([values[n].detach().float() for n in names]))
    return dict(zip(names, stacked, strict=True))


def shard(batch: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """This rank's contiguous 1/N of a global batch."""
    if not world.active:
        return batch
    n = next(iter(batch.values())).shape[0] // world.size
    return {k: v[world.rank * n:(world.rank + 1) * n] for k, v in batch.items()}
