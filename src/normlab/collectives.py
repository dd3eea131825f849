"""The collective operations the synchronized norms use: sums and moments over every rank's batch.

They know nothing of normlab's runner (a no-op without an initialized process group), so the norms depend on
this module and `distributed.py` (which starts the process group and converts models) depends on the norms.
"""

import torch
import torch.distributed as dist


def sync_world(sync: bool) -> int:
    """How many ranks a synchronized norm averages over: the world size under torchrun with `sync`, else 1."""
    if sync and dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def sum_over_ranks_(tensor: torch.Tensor, world: int) -> torch.Tensor:
    """In-place sum over ranks when `world` > 1 (inside the hand-written backwards of the synchronized norms)."""
    if world > 1:
        dist.all_reduce(tensor)
    return tensor


class SumOverRanks(torch.autograd.Function):
    """A differentiable sum over ranks: y = sum_r x_r on every rank, so dL/dx_r = sum_r' dL_r'/dy (the gradient
    is summed over ranks too, as in SyncBatchNorm). On dist.all_reduce, the supported API (torch's
    torch.distributed.nn.functional.all_reduce is deprecated)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def batch_sums(sums: torch.Tensor, count: int, sync: bool) -> tuple[torch.Tensor, int]:
    """Per-channel sums over `count` values each -> over every rank's batch when `sync` (a differentiable
    all-reduce, so gradients flow across ranks as in SyncBatchNorm), and the count they are over."""
    if sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return SumOverRanks.apply(sums), count * dist.get_world_size()
    return sums, count


def batch_mean(x: torch.Tensor, dims: list[int], sync: bool) -> torch.Tensor:
    """Per-channel mean over `dims`, over every rank's batch when `sync`."""
    sums, count = batch_sums(x.sum(dims), x.numel() // x.shape[1], sync)
    return sums / count


def batch_moments(x: torch.Tensor, dims: list[int], sync: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel mean and biased variance over `dims`, and the sample count, over every rank's batch when
    `sync`. The sums are of x minus a shift common to every rank (the batch mean of the detached input: one more
    small all-reduce), so that a large mean cancels in none of them."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    shift = batch_mean(x.detach(), dims, sync)
    centred = x - shift.view(shape)
    sums, count = batch_sums(torch.cat([centred.sum(dims), centred.square().sum(dims)]), x.numel() // x.shape[1], sync)
    mean, second = (sums / count).chunk(2)
    return shift + mean, (second - mean * mean).clamp_min(0), count
