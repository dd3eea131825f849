"""Data-parallel training under `torchrun`: the process group, each rank's shard, and synchronized norms.

`batch_size` is the global batch; every rank takes its contiguous slice of each global batch. Without torchrun
(WORLD_SIZE unset or 1) everything here is a no-op, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from normlab.config import ConfigError
from normlab.norms import synced_layers
from normlab.norms.batch import SyncedBatchNorm


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_(self, tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=op)
        return tensor

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def env_world() -> Dist:
    """Rank and world size from torchrun's environment (no process group is started)."""
    return Dist(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def setup(device: torch.device) -> Dist:
    """Start the process group (gloo on CPU, nccl on CUDA) when launched by torchrun with several processes."""
    d = env_world()
    if not d.enabled:
        return d
    if device.type == "cuda":  # NCCL: one GPU per process
        per_node, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", d.world_size)), torch.cuda.device_count()
        if per_node > gpus:
            raise ConfigError(
                f"{per_node} processes per node are not allowed on {gpus} visible CUDA device(s): NCCL needs one GPU "
                f"per process; use torchrun --nproc_per_node={gpus}, or device=cpu (gloo)"
            )
        torch.cuda.set_device(d.local_rank)
    if not dist.is_initialized():
        cuda = device.type == "cuda"
        dist.init_process_group(
            "nccl" if cuda else "gloo", device_id=torch.device(device.type, d.local_rank) if cuda else None
        )
    return d


def sync_norms(model: nn.Module, device: torch.device) -> nn.Module:
    """norm.sync=true: BN statistics over the global batch. nn.SyncBatchNorm for BN on CUDA (it is GPU-only);
    on CPU, and for the BN statistics inside batch_instance, switchable and mean-only BN, an all-reduce of the
    batch moments (`collectives.batch_moments`)."""
    convert = nn.SyncBatchNorm.convert_sync_batchnorm if device.type == "cuda" else SyncedBatchNorm.convert
    model = convert(model)
    for layer in synced_layers(model):
        layer.sync = True  # type: ignore[assignment]  # (declared: synced_layers)
    return model
