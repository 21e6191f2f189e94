"""A dataset over shard files that reads one slice at a time (memory-mapped) and makes
patch-sized samples; its keys come from ``training.sampler``.

``ShardDataset[(shard, slice, epoch)]`` opens the shard (a small per-process cache of open
files, so memory stays bounded however many shards there are), reads that slice, makes the
sample (``training.augment``) and returns a ``Sample`` with the slice's ``ScanMetadata``
(updated by the augmentation) and a seed for the training step's own draws. All randomness
comes from ``sample_seed(seed, epoch, shard file, slice)``: the same sample in any worker,
on any rank, after any resume.

A shard that cannot be read is reported once (per process) with its path and the reason,
and its samples are left out (``None``; ``collate`` drops them).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import List, Optional, Sequence, Set, Tuple

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import InputFileError
from contextmri_core.io.models.shard_manifest import ShardEntry
from contextmri_core.io.models.shards import ShardReader
from training.augment import AugmentConfig, make_sample

log = logging.getLogger(__name__)
_REPORTED: Set[str] = set()  # shards already reported unreadable by this process


def sample_seed(seed: int, epoch: int, name: str, slice_index: int, purpose: str) -> int:
    """A 63-bit seed from the sample's identity (stable across workers, ranks and resumes)."""
    text = f"{seed}/{epoch}/{name}/{slice_index}/{purpose}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


@contextmanager
def one_thread():
    """Run small tensor operations on one intra-op thread: a few-ms FFT or crop split over
    two threads on a busy 2-core machine waits on the other thread (measured 24 -> 312 ms a
    sample). DataLoader workers have one thread already; this is for ``num_workers: 0``."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def report_unreadable(path: object, reason: str) -> None:
    """Log once per process that a shard is skipped."""
    if str(path) not in _REPORTED:
        _REPORTED.add(str(path))
        log.warning("skipping unreadable shard %s: %s", path, reason)


@dataclass(frozen=True)
class Sample:
    """``x (H, W)`` complex64 patch, its metadata, the seed of its training draws, its key."""

    x: torch.Tensor
    meta: ScanMetadata
    seed: int
    key: Tuple[int, int, int]


@dataclass
class Batch:
    """``x (B, H, W)`` complex64, ``meta`` (B ScanMetadata), ``seeds (B,)`` int64, ``keys``."""

    x: torch.Tensor
    meta: List[ScanMetadata]
    seeds: torch.Tensor
    keys: List[Tuple[int, int, int]]

    def __len__(self) -> int:
        return len(self.meta)

    def pin_memory(self) -> "Batch":  # called by DataLoader(pin_memory=True)
        return Batch(self.x.pin_memory(), self.meta, self.seeds, self.keys)


def collate(samples: Sequence[Optional[Sample]]) -> Batch:
    """Stack samples of one patch size; ``None`` (unreadable) entries are dropped."""
    good = [s for s in samples if s is not None]
    x = (torch.stack([s.x for s in good]) if good else torch.zeros(0, 0, 0, dtype=torch.complex64))
    return Batch(x, [s.meta for s in good], torch.tensor([s.seed for s in good], dtype=torch.int64),
                 [s.key for s in good])


class ShardDataset(torch.utils.data.Dataset):
    """Map-style dataset keyed by ``(shard, slice, epoch)`` over ``entries``.

    ``train`` True: augmentations of ``augment`` and a random crop; False: centred crop only.
    ``max_open``: open shards kept per process (each one memory-mapped).
    """

    def __init__(self, entries: Sequence[ShardEntry], patch: Sequence[int],
                 augment: AugmentConfig = AugmentConfig(), seed: int = 0, train: bool = True,
                 max_open: int = 8) -> None:
        self.entries = tuple(entries)
        self.patch = (int(patch[0]), int(patch[1]))
        self.augment, self.seed, self.train = augment, int(seed), bool(train)
        self.max_open = max(1, int(max_open))
        self._open: "OrderedDict[int, ShardReader]" = OrderedDict()
        self._bad: Set[int] = set()

    def __len__(self) -> int:
        return sum(e.num_slices for e in self.entries)

    def __getstate__(self) -> dict:  # open files stay in the process that opened them
        return {**self.__dict__, "_open": OrderedDict()}

    def reader(self, shard: int) -> ShardReader:
        """The open reader of shard ``shard`` (least recently used ones are closed)."""
        r = self._open.pop(shard, None) or ShardReader(self.entries[shard].path)
        self._open[shard] = r
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return r

    def __getitem__(self, key: Tuple[int, int, int]) -> Optional[Sample]:
        with one_thread():
            return self._sample(*(int(k) for k in key))

    def _sample(self, shard: int, index: int, epoch: int) -> Optional[Sample]:
        if shard in self._bad:
            return None
        entry = self.entries[shard]
        try:
            reader = self.reader(shard)
            x, meta = reader.image(index), reader.header.metadata[index]
        except (InputFileError, OSError) as exc:
            self._bad.add(shard)
            self._open.pop(shard, None)
            report_unreadable(entry.path, str(exc))
            return None
        name = entry.path.name
        g = None
        if self.train:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, name, index, "augment"))
        x, meta = make_sample(x, meta, self.patch, self.augment, g)
        return Sample(x, meta, sample_seed(self.seed, epoch, name, index, "noise"),
                      (shard, index, epoch))
