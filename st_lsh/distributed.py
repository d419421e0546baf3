"""Collectives of distributed mining and of the training-time refresh, as thin calls on ``torch.distributed``.

Nothing here manages processes: under ``torchrun`` or ``accelerate launch`` the launcher (or the trainer's
accelerate state) has initialised the default process group, and these helpers only read it. Without a process
group every helper is the single-process identity, so the same code runs on one process or many.

Example::

    >>> from st_lsh.distributed import world, shard
    >>> rank, size = world()
    >>> shard(10, rank, size)          # this rank's contiguous slice of 10 items
    range(0, 10)
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def init_from_environment(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` / ``accelerate launch`` describe in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), when there is one and it is not joined yet: gloo on CPU, nccl
    on CUDA. Returns True when running on more than one process."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return is_distributed()


def is_distributed() -> bool:
    """True when a default process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def shard(n: int, rank: int, world_size: int) -> range:
    """The contiguous slice of ``range(n)`` that ``rank`` owns; slices differ in length by at most one."""
    start = n * rank // world_size
    return range(start, n * (rank + 1) // world_size)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` on a single process)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over ranks by ``op`` ("sum" or "max"); the identity on a single process.

    Sums of float64 column sums keep the mean independent of the sharding in practice: the float32 cast of two
    float64 sums that differ by ~1e-16 relative almost never differs."""
    if op not in ("sum", "max"):
        raise ValueError(f"op must be 'sum' or 'max', got {op!r}.")
    if is_distributed():
        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        moved = tensor.to(device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return moved.to(tensor.device)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
