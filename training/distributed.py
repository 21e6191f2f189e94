"""torchrun plumbing: process group (NCCL on GPUs, gloo on CPU), rank helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """``backend``: the process group's ("nccl" | "gloo"), None for a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """A process group is up (DDP, barriers): under torchrun, even with one process."""
        return self.backend is not None


def setup() -> Dist:
    """Read torchrun's environment; a plain ``python`` run is rank 0 of 1 without a process
    group. Under torchrun the group is started even for one process (``--nproc_per_node 1``),
    so a one-GPU run exercises NCCL and DDP exactly as a multi-GPU run does."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    backend = None
    if world > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
    return Dist(rank, world, local, device, backend)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(d: Dist, obj):
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(d: Dist, value: float) -> float:
    """The mean of ``value`` over the ranks (itself on one process)."""
    if not d.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64,
                     device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / d.world_size
