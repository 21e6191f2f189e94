"""Which slices each rank trains on, in which order: a pure function of (seed, epoch).

One epoch, for ``world_size`` ranks and batch size ``B``:

1. the shards are put in a random order (``seed``, ``epoch``) and their slices concatenated
   (slices of one shard stay together);
2. that sequence is cut into ``world_size`` contiguous parts, one per rank, so a rank reads a
   run of whole shards (plus at most part of one shard at either end, shared with its
   neighbour). Every slice lies in exactly one part: each is seen once per epoch, none twice;
3. every rank shuffles its part locally: each slice moves by less than ``shuffle_buffer``
   positions (``argsort(i + buffer * u_i)``), so only a bounded window of shards is open at
   any time, as with a shuffle buffer;
4. the part is cut into batches. All ranks take the same number of steps (DDP needs that):
   full batches of ``B``, then one last step shared out evenly (1..B slices per rank, or
   ``B + 1`` on a few ranks when fewer slices than ranks are left).

``ShardBatchSampler`` yields those batches as lists of ``(shard, slice, epoch)`` keys for a
``DataLoader`` (``batch_sampler=``); the DataLoader keeps their order whatever the number of
workers. ``set_epoch(epoch, start_batch)`` resumes inside an epoch without reading anything.
"""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple

import numpy as np

from contextmri_core.errors import ConfigError

Key = Tuple[int, int, int]  # (shard index, slice index within the shard, epoch)
_SALT = 0x5EED  # separates these streams from other uses of the same seed


def batch_sizes(total: int, world_size: int, batch: int) -> List[List[int]]:
    """Per rank, the sizes of its batches in one epoch (same count on every rank)."""
    full, rest = divmod(total, world_size * batch)
    if full == 0 and rest < world_size:
        raise ConfigError(f"{total} training slices cannot feed {world_size} ranks: add data "
                          "or use fewer processes")
    sizes = [[batch] * full for _ in range(world_size)]
    if rest >= world_size:
        for r in range(world_size):
            sizes[r].append(rest // world_size + (1 if r < rest % world_size else 0))
    else:
        for r in range(rest):
            sizes[r][-1] += 1
    return sizes


def epoch_sequence(shard_sizes: Sequence[int], seed: int, epoch: int, shuffle: bool = True
                   ) -> np.ndarray:
    """``(N, 2)`` int64 ``(shard, slice)`` of one epoch: shards in a random order (or in
    order without ``shuffle``), each shard's slices together and in order."""
    sizes = np.asarray(shard_sizes, dtype=np.int64)
    order = (np.random.default_rng([seed, epoch, _SALT]).permutation(len(sizes)) if shuffle
             else np.arange(len(sizes)))
    counts = sizes[order]
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    slices = np.arange(int(counts.sum()), dtype=np.int64) - starts
    return np.stack([np.repeat(order, counts), slices], axis=1)


def local_shuffle(n: int, buffer: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(n)`` that moves no element by ``buffer`` positions or more."""
    if buffer <= 1:
        return np.arange(n)
    return np.argsort(np.arange(n) + buffer * rng.random(n), kind="stable")


def rank_batches(shard_sizes: Sequence[int], seed: int, epoch: int, rank: int,
                 world_size: int, batch: int, shuffle_buffer: int = 256, shuffle: bool = True
                 ) -> List[np.ndarray]:
    """The batches (each ``(b, 2)`` of ``(shard, slice)``) that ``rank`` trains on in ``epoch``."""
    seq = epoch_sequence(shard_sizes, seed, epoch, shuffle)
    sizes = batch_sizes(len(seq), world_size, batch)
    start = sum(sum(s) for s in sizes[:rank])
    part = seq[start:start + sum(sizes[rank])]
    if shuffle:
        rng = np.random.default_rng([seed, epoch, rank, world_size, _SALT])
        part = part[local_shuffle(len(part), shuffle_buffer, rng)]
    edges = np.cumsum([0] + sizes[rank])
    return [part[a:b] for a, b in zip(edges[:-1], edges[1:])]


class ShardBatchSampler:
    """Batches of ``(shard, slice, epoch)`` keys for one rank (see the module docstring)."""

    def __init__(self, shard_sizes: Sequence[int], batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle_buffer: int = 256,
                 shuffle: bool = True) -> None:
        self.shard_sizes = [int(s) for s in shard_sizes]
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle_buffer, self.shuffle = int(shuffle_buffer), bool(shuffle)
        self.epoch, self.start_batch = 0, 0
        batch_sizes(sum(self.shard_sizes), self.world_size, self.batch_size)  # fail early

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The next iteration yields ``epoch``'s batches from ``start_batch`` on."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def batches_per_epoch(self) -> int:
        return len(batch_sizes(sum(self.shard_sizes), self.world_size, self.batch_size)[0])

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def __iter__(self) -> Iterator[List[Key]]:
        batches = rank_batches(self.shard_sizes, self.seed, self.epoch, self.rank,
                               self.world_size, self.batch_size, self.shuffle_buffer,
                               self.shuffle)
        for b in batches[self.start_batch:]:
            yield [(int(s), int(i), self.epoch) for s, i in b]
