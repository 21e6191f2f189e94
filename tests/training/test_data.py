"""training.data + training.loader: lazy patch samples of mixed matrices with their metadata,
the same batches with and without worker processes, bounded open files, broken shards
reported once and skipped."""

import logging

import torch

from contextmri_core.io.models.shards import list_shards, read_shard
from training.augment import AugmentConfig, fit_to_patch
from training.data import ShardDataset, collate, sample_seed
from training.distributed import Dist
from training.loader import epochs, load_index, make_loader, resolve_patch
from training.sampler import ShardBatchSampler
from tests.training.shard_data import write_set

MIXED = [(3, 32, 32), (2, 40, 24), (4, 48, 48), (3, 56, 40)]


def test_samples_are_patches_of_the_stored_slices_with_their_metadata(tmp_path):
    folder = write_set(tmp_path / "s", MIXED)
    index = load_index(str(folder), Dist())
    ds = ShardDataset(index.entries, (32, 32), train=False)
    for s, path in enumerate(list_shards(folder)):
        whole = read_shard(path)
        for i in range(whole.x.shape[0]):
            sample = ds[(s, i, 0)]
            assert torch.equal(sample.x, fit_to_patch(whole.x[i], (32, 32)))
            assert sample.meta == whole.metadata[i] and sample.key == (s, i, 0)
    train = ShardDataset(index.entries, (32, 32), AugmentConfig(), seed=1, train=True)
    a, b, c = train[(2, 1, 0)], train[(2, 1, 0)], train[(2, 1, 1)]
    assert torch.equal(a.x, b.x) and a.seed == b.seed  # a sample is a function of its key
    assert a.seed != c.seed and not torch.equal(a.x, c.x)  # a new epoch, a new crop and draws
    assert a.seed == sample_seed(1, 0, "scan002.safetensors", 1, "noise")


def test_worker_processes_give_the_same_batches_in_the_same_order(tmp_path):
    folder = write_set(tmp_path / "s", MIXED)
    index = load_index(str(folder), Dist())
    aug = AugmentConfig(random_phase=True, flip_lr=True, intensity_scale=(0.8, 1.25),
                        resample_spacing_mm=(4.0, 8.0))
    runs = []
    for workers in (0, 2):
        ds = ShardDataset(index.entries, (32, 32), aug, seed=3)
        sampler = ShardBatchSampler([e.num_slices for e in index.entries], 3, 3, shuffle_buffer=4)
        loader = make_loader(ds, sampler, workers, 2, torch.device("cpu"))
        it = epochs(loader, sampler, 0, 0)
        runs.append([next(it) for _ in range(9)])  # two epochs and a bit
    for (e0, i0, b0), (e1, i1, b1) in zip(*runs):
        assert (e0, i0) == (e1, i1) and b0.keys == b1.keys and b0.meta == b1.meta
        assert torch.equal(b0.x, b1.x) and torch.equal(b0.seeds, b1.seeds)
        assert b0.x.shape[-2:] == (32, 32) and b0.x.dtype == torch.complex64
    assert [e for e, _, _ in runs[0]] == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    spacings = {m.pixel_spacing_mm for _, _, b in runs[0] for m in b.meta}
    assert all(3.8 <= s <= 8.5 for s in spacings) and len(spacings) > 3  # resampled, recorded


def test_open_files_stay_bounded(tmp_path):
    folder = write_set(tmp_path / "s", [(1, 16, 16)] * 12)
    ds = ShardDataset(load_index(str(folder), Dist()).entries, (16, 16), max_open=3)
    for s in range(12):
        assert ds[(s, 0, 0)] is not None
        assert len(ds._open) <= 3


def test_a_shard_broken_after_indexing_is_reported_once_and_skipped(tmp_path, caplog):
    folder = write_set(tmp_path / "s", MIXED)
    index = load_index(str(folder), Dist())
    bad = list_shards(folder)[2]
    bad.write_bytes(b"not a shard any more")
    ds = ShardDataset(index.entries, (32, 32), train=False)
    with caplog.at_level(logging.WARNING):
        samples = [ds[(s, i, 0)] for s, e in enumerate(index.entries) for i in range(e.num_slices)]
    assert [m for m in caplog.messages if str(bad) in m] == [caplog.messages[0]]
    assert "skipping unreadable shard" in caplog.messages[0]
    assert sum(s is None for s in samples) == 4
    batch = collate(samples)
    assert len(batch) == 8 and batch.x.shape == (8, 32, 32)


def test_unreadable_shards_at_start_are_reported_once_and_left_out(tmp_path, caplog):
    folder = write_set(tmp_path / "s", MIXED, manifest=False)
    (folder / "zz_broken.safetensors").write_bytes(b"\0" * 10)
    with caplog.at_level(logging.WARNING):
        index = load_index(str(folder), Dist())
    assert len(index.entries) == 4 and index.num_slices == 12
    assert len([m for m in caplog.messages if "zz_broken" in m]) == 1


def test_a_single_matrix_is_the_default_patch_and_mixed_ones_need_a_patch(tmp_path):
    import pytest

    from contextmri_core.errors import ConfigError

    same = load_index(str(write_set(tmp_path / "a", [(2, 40, 24)] * 2)), Dist())
    assert resolve_patch(None, same) == (40, 24)
    mixed = load_index(str(write_set(tmp_path / "b", MIXED)), Dist())
    assert resolve_patch([48, 32], mixed) == (48, 32)
    with pytest.raises(ConfigError, match="patch_size"):
        resolve_patch(None, mixed)
