"""training.sampler: each slice once per epoch over all ranks, ranks in step, shards kept
together, a bounded shuffle, order from (seed, epoch) alone, resume inside an epoch."""

import numpy as np
import pytest

from contextmri_core.errors import ConfigError
from training.sampler import ShardBatchSampler, batch_sizes, local_shuffle, rank_batches

SIZES = [7, 3, 12, 5, 1, 9, 16, 4, 8, 2]  # 67 slices in 10 shards


def _iter(rank, world, batch, seed, epoch, buffer, start=0):
    s = ShardBatchSampler(SIZES, batch, seed, rank, world, buffer)
    s.set_epoch(epoch, start)
    return list(s)


@pytest.mark.parametrize("world,batch", [(1, 4), (2, 3), (3, 4), (4, 5), (8, 8), (5, 16)])
def test_every_slice_once_per_epoch_and_ranks_take_the_same_number_of_steps(world, batch):
    per_rank = [_iter(r, world, batch, 0, 3, 8) for r in range(world)]
    keys = [(s, i) for rank in per_rank for b in rank for s, i, _ in b]
    assert sorted(keys) == sorted((s, i) for s, n in enumerate(SIZES) for i in range(n))
    assert len({len(rank) for rank in per_rank}) == 1  # DDP: same step count on every rank
    assert all(1 <= len(b) <= batch + 1 for rank in per_rank for b in rank)
    assert all(len(b) == batch for rank in per_rank for b in rank[:-1])
    assert all(k[2] == 3 for rank in per_rank for b in rank for k in b)


def test_ranks_read_contiguous_runs_of_shards():
    per_rank = [[k[0] for b in _iter(r, 4, 4, 0, 0, 1) for k in b] for r in range(4)]
    shared = [set(a) & set(b) for i, a in enumerate(per_rank) for b in per_rank[i + 1:]]
    assert sum(len(s) for s in shared) <= 3  # at most one shard split at each of 3 borders
    for keys in per_rank:  # without shuffling a rank reads its shards one after the other
        runs = [k for j, k in enumerate(keys) if j == 0 or k != keys[j - 1]]
        assert len(runs) == len(set(runs))


def test_order_depends_on_seed_and_epoch_only():
    a = _iter(1, 2, 4, seed=5, epoch=2, buffer=8)
    assert a == _iter(1, 2, 4, seed=5, epoch=2, buffer=8)
    assert a != _iter(1, 2, 4, seed=5, epoch=3, buffer=8)
    assert a != _iter(1, 2, 4, seed=6, epoch=2, buffer=8)


def test_local_shuffle_moves_no_slice_by_the_buffer_or_more():
    rng = np.random.default_rng(0)
    for n, buf in ((100, 8), (1000, 64), (5, 100)):
        p = local_shuffle(n, buf, rng)
        assert sorted(p) == list(range(n)) and np.abs(p - np.arange(n)).max() < buf
    assert list(local_shuffle(10, 1, rng)) == list(range(10))
    shards_open = [len({k[0] for k in b}) for b in rank_batches(SIZES * 50, 0, 0, 0, 1, 8, 16)]
    assert max(shards_open) <= 8  # 16-slice window over shards of >= 1 slice: bounded


def test_resume_inside_an_epoch_yields_the_rest_of_it():
    full = _iter(0, 2, 3, 1, 4, 8)
    assert _iter(0, 2, 3, 1, 4, 8, start=4) == full[4:]
    s = ShardBatchSampler(SIZES, 3, 1, 0, 2, 8)
    s.set_epoch(4, 4)
    assert len(s) == len(full) - 4 == s.batches_per_epoch() - 4


def test_too_few_slices_for_the_ranks_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot feed 8 ranks"):
        batch_sizes(5, 8, 2)
    assert batch_sizes(9, 8, 2) == [[2], [1], [1], [1], [1], [1], [1], [1]]
    assert batch_sizes(17, 2, 4) == [[4, 5], [4, 4]]  # 1 left for 2 ranks: B + 1 once
    assert batch_sizes(22, 2, 4) == [[4, 4, 3], [4, 4, 3]]
