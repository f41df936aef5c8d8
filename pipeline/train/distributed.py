"""Data-parallel training under ``torchrun``: process group set-up and a gradient-aware gather.

``torchrun`` exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR/PORT``); when
``WORLD_SIZE`` is 1 or absent everything here degrades to a single process and no process
group is created. NCCL is used on GPUs, gloo on CPUs.

The contrastive loss needs every rank's embeddings (the in-batch negatives are the *global*
batch, as in the reference). :func:`all_gather_with_grad` concatenates the ranks' shards in
rank order; its backward sums the incoming gradients over ranks and returns this rank's slice.
Every rank computes the same loss on the same gathered batch, so the summed slice is
``world_size`` times the gradient of that loss with respect to the local shard; DDP then
*averages* parameter gradients over ranks, and the result is exactly the gradient of the
global-batch loss, as a single process on the whole batch would compute it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.device import resolve_device
from pipeline.sharding import Shard, torchrun_ranks


@dataclass(frozen=True)
class DistContext(Shard):
    """Where this process runs: its rank among ``world_size`` (only rank 0 logs, shows progress
    bars and writes files) and its device."""

    device: torch.device


def init_distributed(device_preference: str) -> DistContext:
    """Read torchrun's variables; join the process group when there is more than one rank."""
    ranks = torchrun_ranks()
    device = resolve_device(device_preference, "train.device", ranks.local_rank)
    if ranks.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=ranks.rank, world_size=ranks.world_size)
    return DistContext(rank=ranks.rank, world_size=ranks.world_size, local_rank=ranks.local_rank,
                       device=device)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op in a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward routes the summed gradient to the local shard."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        shards = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(shards, tensor.contiguous())
        return torch.cat(shards, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` (same shape on all ranks) along dim 0, in rank order.

    Identity in a single process. Integer/bool tensors are gathered too (no gradient).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if not tensor.is_floating_point():
        shards = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(shards, tensor.contiguous())
        return torch.cat(shards, dim=0)
    return _GatherWithGrad.apply(tensor)


def all_reduce_mean(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average scalar metrics over ranks (for logging; every rank must call it)."""
    if not ctx.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= ctx.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist())}
