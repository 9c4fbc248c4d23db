"""Several processes, one store: the shard of a process under ``torchrun``.

``torchrun`` (``python -m torch.distributed.run``) starts ``WORLD_SIZE`` processes and tells
each its ``RANK`` and ``LOCAL_RANK`` in environment variables. Process ``r`` explains the
chunks ``k`` with ``k mod WORLD_SIZE = r`` and writes them into the shared store; chunks
never overlap, so no process waits for another until the end.

>>> shard_of(range(7), rank=1, world=3)
[1, 4]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """Where this process stands: its rank among ``world`` processes, its local rank."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether several processes share the work."""
        return self.world > 1

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for in a single process)."""
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, in every process."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launched_by_torchrun() -> bool:
    """Whether the torch.distributed environment variables are set with WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def shard_of(items: Iterable[int], rank: int, world: int) -> list[int]:
    """The items ``k`` with ``k mod world = rank`` (round robin)."""
    return [k for k in items if k % world == rank]


def local_device(shard: Shard, device: Any, model_device: torch.device) -> torch.device:
    """The device to explain on: ``device`` if given; under torchrun with CUDA the process's
    own GPU ``cuda:LOCAL_RANK``; otherwise the model's device."""
    if device is not None:
        return torch.device(device)
    if shard.distributed and torch.cuda.is_available():
        return torch.device("cuda", shard.local_rank)
    return model_device


@contextmanager
def process_group() -> Iterator[Shard]:
    """The :class:`Shard` of this process; under torchrun, join the process group (gloo on
    the CPU, nccl with CUDA) unless the caller already did, and leave it again afterwards."""
    if not launched_by_torchrun():
        yield Shard()
        return
    started = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        started = True
    try:
        yield Shard(
            rank=dist.get_rank(),
            world=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    finally:
        if started:
            dist.destroy_process_group()
