"""Shard folder -> index (same on every rank) -> DataLoader of ``Batch`` -> device.

``load_index`` reads the folder's index on rank 0 (``io.models.shard_manifest.index_shards``),
reports each unreadable shard once with its path and shares the index with the other ranks,
so all ranks plan their epochs over the same shards. ``make_loader`` runs the reading in
``num_workers`` worker processes (0: in the training process), pins memory and prefetches
``prefetch_factor`` batches per worker when training on a GPU; ``to_device`` keeps the next
batch's host-to-device copy in flight on a side CUDA stream while the current step runs.
"""

from __future__ import annotations

import logging
from typing import Iterable, Iterator, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader

from contextmri_core.errors import ConfigError, InputFileError
from contextmri_core.io.models.shard_manifest import ShardIndex, index_shards
from training import distributed
from training.data import Batch, ShardDataset, collate, report_unreadable
from training.sampler import ShardBatchSampler

log = logging.getLogger(__name__)


def load_index(directory: str, d: distributed.Dist, what: str = "training") -> ShardIndex:
    """The readable shards of ``directory`` (rank 0 reads, reports and broadcasts)."""
    index = None
    if d.is_main:
        try:
            index = index_shards(directory)
        except InputFileError as exc:  # every rank raises it, none waits for the others
            index = exc
        else:
            for path, reason in index.unreadable:
                report_unreadable(path, reason)
    index = distributed.broadcast_object(d, index)
    if isinstance(index, InputFileError):
        raise index
    if not index.entries:
        raise InputFileError(directory, f"no readable {what} shards: run python -m "
                                        "training.prepare RAW_DIR OUT_DIR first")
    return index


def resolve_patch(patch: Optional[Sequence[int]], index: ShardIndex) -> Tuple[int, int]:
    """``patch`` as ``(H, W)``; without one, the data's matrix when every shard shares it."""
    if patch:
        return int(patch[0]), int(patch[1])
    sizes = sorted({(e.height, e.width) for e in index.entries})
    if len(sizes) == 1:
        return sizes[0]
    raise ConfigError(f"the shards hold matrices of {len(sizes)} sizes ({sizes[:4]}...): set "
                      "fit.patch_size, e.g. patch_size: [128, 128] (crops or zero-pads samples)")


def make_loader(dataset: ShardDataset, sampler: ShardBatchSampler, num_workers: int,
                prefetch_factor: int, device: torch.device) -> DataLoader:
    """A DataLoader yielding ``Batch`` in the sampler's order."""
    workers = max(0, int(num_workers))
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=device.type == "cuda",
                      prefetch_factor=max(1, int(prefetch_factor)) if workers else None,
                      persistent_workers=workers > 0)


def epochs(loader: DataLoader, sampler: ShardBatchSampler, epoch: int, start_batch: int
           ) -> Iterator[Tuple[int, int, Batch]]:
    """``(epoch, index in epoch, batch)`` from ``(epoch, start_batch)`` on, without end."""
    while True:
        sampler.set_epoch(epoch, start_batch)
        for i, batch in enumerate(loader, start=start_batch):
            yield epoch, i, batch
        epoch, start_batch = epoch + 1, 0


def _moved(batch: Batch, device: torch.device) -> Batch:
    return Batch(batch.x.to(device, non_blocking=True), batch.meta, batch.seeds, batch.keys)


def to_device(items: Iterable[Tuple[int, int, Batch]], device: torch.device
              ) -> Iterator[Tuple[int, int, Batch]]:
    """Batches moved to ``device``; on CUDA the next copy overlaps the current step."""
    if device.type != "cuda":
        yield from items
        return
    stream = torch.cuda.Stream(device)
    pending = None
    for epoch, i, batch in items:
        with torch.cuda.stream(stream):
            moved = _moved(batch, device)
        if pending is not None:
            yield pending
        torch.cuda.current_stream(device).wait_stream(stream)
        moved.x.record_stream(torch.cuda.current_stream(device))
        pending = (epoch, i, moved)
    if pending is not None:
        yield pending
