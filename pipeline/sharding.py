"""Running an extraction stage as N workers under ``torchrun`` (one machine or several).

``torchrun --nproc_per_node=P [--nnodes=M --rdzv_endpoint=HOST:PORT ...] -m stages.frames ...``
starts ``P * M`` copies of a stage. Each takes a deterministic contiguous block of the work
(:func:`block`), writes its part into a parts folder beside the output (which must therefore be
on a filesystem every node sees), and rank 0 merges the parts into exactly the artifact one
process would have written, then swaps it in atomically. A collective check after the parts
are written makes every rank fail together when one of them failed, so nobody waits forever.

The process group is gloo (it only carries barriers and small status objects, never tensors),
so it works the same with CPUs and GPUs; each rank picks its GPU from ``LOCAL_RANK``.
Without torchrun (``WORLD_SIZE`` unset or 1) everything degrades to a single process.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ShardError(RuntimeError):
    """A worker failed; every worker stops with its message."""


@dataclass(frozen=True)
class Shard:
    rank: int
    world_size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def torchrun_ranks() -> Shard:
    """This process's place among torchrun's workers (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``;
    one process when they are absent), checked; joins no process group."""
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return Shard(rank=rank, world_size=world, local_rank=local)


def current_shard() -> Shard:
    """This process's place among torchrun's workers (joins a gloo group when there are several)."""
    shard = torchrun_ranks()
    if shard.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo", rank=shard.rank, world_size=shard.world_size)
    return shard


def block(n_items: int, shard: Shard, granularity: int = 1) -> range:
    """The contiguous block of ``range(n_items)`` that ``shard`` handles. Block boundaries fall on
    multiples of ``granularity`` (e.g. an encoding batch), so each batch is computed exactly as a
    single process computes it and the merged result is bit-identical."""
    units = (n_items + granularity - 1) // granularity
    start = (units * shard.rank) // shard.world_size
    stop = (units * (shard.rank + 1)) // shard.world_size
    return range(min(start * granularity, n_items), min(stop * granularity, n_items))


def gather_status(shard: Shard, error: str | None) -> list[str | None]:
    """Every rank's error (None = ok), in rank order; a no-op list in a single process."""
    if not shard.distributed:
        return [error]
    import torch.distributed as dist

    out: list[Any] = [None] * shard.world_size
    dist.all_gather_object(out, error)
    return out


def barrier(shard: Shard) -> None:
    if shard.distributed:
        import torch.distributed as dist

        dist.barrier()


def finish(shard: Shard) -> None:
    if shard.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def parts_dir(out: str | Path) -> Path:
    """The folder beside ``out`` that holds the workers' parts while they run."""
    out = Path(out)
    return out.with_name(f".{out.name}.parts")


def run_sharded(shard: Shard, out: str | Path, work, merge, keep_parts: bool = False) -> Any:
    """``work(part_dir)`` on every rank, then ``merge([part dirs in rank order])`` on rank 0.

    Returns rank 0's merge result (None on other ranks). A failure on any rank (an exception in
    ``work``) makes every rank raise :class:`ShardError` with the first message. After a merge
    the parts are removed; after a failure they are kept when ``keep_parts`` (resumable parts:
    a rerun continues them), else removed. Stale parts are cleared first unless ``keep_parts``.
    """
    parts = parts_dir(out)
    mine = parts / f"rank{shard.rank:05d}"
    if shard.is_main and not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    barrier(shard)
    error = None
    try:
        work(mine)
    except Exception as err:  # reported to every rank below
        error = f"rank {shard.rank}: {err}"
    errors = [e for e in gather_status(shard, error) if e]
    result = None
    try:
        if errors:
            raise ShardError(errors[0] + (f" (and {len(errors) - 1} more ranks failed)" if len(errors) > 1 else ""))
        if shard.is_main:
            result = merge([parts / f"rank{r:05d}" for r in range(shard.world_size)])
    finally:
        barrier(shard)
        if shard.is_main and (not errors or not keep_parts):
            shutil.rmtree(parts, ignore_errors=True)
    return result
