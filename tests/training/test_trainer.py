"""training.trainer in-process: three matrix sizes train with validation, metrics and the
best checkpoint; a resume inside an epoch repeats the uninterrupted run exactly; a shard
that breaks mid-run is skipped."""

import csv
import logging

import pytest
import torch

from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.io.models.shards import list_shards
from training.config import load_config
from training.distributed import Dist
from training.trainer import Trainer
from tests.training.shard_data import TINY, write_set

AUGMENT = {"random_phase": True, "flip_lr": True, "intensity_scale": [0.8, 1.25],
           "resample_spacing_mm": [4.0, 8.0]}


def config(tmp_path, data, out, **kw):
    return load_config(None, {**TINY, "data": str(data), "out": str(tmp_path / out), **kw})


def test_three_matrix_sizes_train_with_validation_metrics_and_the_best_checkpoint(tmp_path):
    data = write_set(tmp_path / "train", [(4, 32, 32), (3, 48, 40), (4, 64, 64), (3, 48, 40)])
    val = write_set(tmp_path / "val", [(2, 48, 48), (2, 32, 32)], seed=50)
    cfg = config(tmp_path, data, "run", steps=8, patch_size=[32, 32], val_data=str(val),
                 checkpoint_every=8, val_every=4, log_every=2, augment=AUGMENT, val_slices=3)
    t = Trainer(cfg, Dist())
    t.run()
    out = tmp_path / "run"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    train = [(int(r["step"]), float(r["train_loss"])) for r in rows if r["train_loss"]]
    vals = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    assert [s for s, _ in train] == [2, 4, 6, 8] and [s for s, _ in vals] == [4, 8]
    assert all(0 < v < 10 for _, v in train + vals)
    assert all(float(r["slices_per_s"]) > 0 for r in rows if r["train_loss"])
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = load_prior(out / "model_best")
    assert best.info["best_val_loss"] == pytest.approx(min(v for _, v in vals), rel=1e-5)
    assert best.normalisation.image_size == (32, 32)
    assert load_prior(out / "model").info["trained_steps"] == 8
    assert {e.height for e in t.data.entries} == {32, 48, 64}


def test_a_resume_inside_an_epoch_repeats_the_uninterrupted_run(tmp_path):
    data = write_set(tmp_path / "d", [(4, 32, 32), (3, 40, 32), (5, 32, 48), (2, 32, 32)])
    common = dict(patch_size=[32, 32], augment=AUGMENT, log_batches=True, batch_size=3,
                  p_field_drop=0.1)
    whole = Trainer(config(tmp_path, data, "a", steps=7, **common), Dist())
    whole.run()  # 14 slices / 3 = 5 steps per epoch: 7 steps cross into epoch 1
    first = Trainer(config(tmp_path, data, "b", steps=3, **common), Dist())
    first.run()
    second = Trainer(config(tmp_path, data, "b", steps=7, **common), Dist())
    assert second.resume() and (second.epoch, second.batch_in_epoch) == (0, 3)
    second.run()
    assert first.seen + second.seen == whole.seen
    for name, value in whole.prior.state_dict().items():
        assert torch.equal(value, second.prior.state_dict()[name]), name
    for name, value in whole.ema.state_dict().items():
        assert torch.equal(value, second.ema.state_dict()[name]), name
    epoch0 = sorted(k[:2] for k in whole.seen if k[2] == 0)
    assert epoch0 == sorted((s, i) for s, n in enumerate([4, 3, 5, 2]) for i in range(n))


def test_a_shard_that_breaks_mid_run_is_reported_once_and_skipped(tmp_path, caplog):
    data = write_set(tmp_path / "d", [(3, 32, 32)] * 4)
    t = Trainer(config(tmp_path, data, "c", steps=6, log_batches=True), Dist())
    broken = list_shards(data)[1]
    broken.write_bytes(broken.read_bytes()[:200])  # truncated after indexing
    with caplog.at_level(logging.WARNING):
        t.run()
    assert t.step == 6
    assert len([m for m in caplog.messages if str(broken) in m]) == 1
    assert all(k[0] != 1 for k in t.seen)
