"""training.metrics: metrics.csv survives a resume without duplicate steps, loss.png is drawn,
TensorBoard events appear when tensorboard is installed, other ranks write nothing."""

import csv

import pytest

from training.metrics import MetricsLog


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_resume_keeps_the_rows_up_to_its_step_and_appends(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    for step in (1, 2, 3, 4):
        log.log(step, epoch=0, train_loss=1.0 / step, lr=1e-3)
    log.log(4, val_loss=0.4)
    assert log.plot().read_bytes()[:4] == b"\x89PNG"
    log.close()
    again = MetricsLog(tmp_path, enabled=True, resume_step=2)  # the state was saved at step 2
    again.log(3, epoch=0, train_loss=0.31)
    got = rows(tmp_path / "metrics.csv")
    assert [(r["step"], r["train_loss"]) for r in got] == [("1", "1"), ("2", "0.5"), ("3", "0.31")]
    assert got[0]["val_loss"] == "" and got[0]["lr"] == "0.001"
    with pytest.raises(KeyError, match="unknown column"):
        again.log(5, loss=1.0)


def test_only_the_main_rank_writes(tmp_path):
    log = MetricsLog(tmp_path / "r1", enabled=False)
    log.log(1, train_loss=1.0)
    assert log.plot() is None and not (tmp_path / "r1").exists()


def test_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    log = MetricsLog(tmp_path, enabled=True)
    log.log(1, train_loss=0.9, val_loss=1.1)
    log.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
