"""Training observability on rank 0: ``OUT/metrics.csv`` (one row per logged step),
``OUT/loss.png`` (training and validation loss over steps) and TensorBoard event files in
``OUT/tensorboard/`` when ``tensorboard`` is installed. A resumed run keeps the rows up to
the step it resumes from and appends."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Dict, List, Optional

from contextmri_core.io.images.png import line_chart

log = logging.getLogger(__name__)

COLUMNS = ("step", "epoch", "train_loss", "val_loss", "lr", "slices_per_s", "data_wait_frac",
           "elapsed_s")


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


class MetricsLog:
    """Append-only metrics of one run directory (a no-op object on ranks other than 0)."""

    def __init__(self, out: Path, enabled: bool, resume_step: int = 0) -> None:
        self.out, self.enabled = Path(out), enabled
        self.csv = self.out / "metrics.csv"
        self.rows: List[Dict[str, str]] = []
        self.tb = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.csv.exists() and resume_step > 0:
            with open(self.csv, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(self.rows)
        self.tb = _tensorboard(self.out)

    def log(self, step: int, **values: Optional[float]) -> None:
        """One row; missing values stay empty."""
        if not self.enabled:
            return
        row = {k: "" for k in COLUMNS}
        row["step"] = str(step)
        for k, v in values.items():
            if k not in COLUMNS:
                raise KeyError(f"metrics: unknown column {k!r}")
            row[k] = "" if v is None else f"{v:.6g}"
        self.rows.append(row)
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)
        if self.tb is not None:
            for k in ("train_loss", "val_loss", "lr", "slices_per_s"):
                if values.get(k) is not None:
                    self.tb.add_scalar(k.replace("_", "/", 1) if "loss" in k else k,
                                       float(values[k]), step)
            self.tb.flush()

    def plot(self) -> Optional[Path]:
        """``loss.png``: training and validation loss against the step."""
        if not self.enabled or not self.rows:
            return None
        series = {}
        for col, name in (("train_loss", "train (epsilon loss)"), ("val_loss", "val (EMA, fixed draws)")):
            pts = [(int(r["step"]), float(r[col])) for r in self.rows if r.get(col)]
            pts = [p for p in pts if math.isfinite(p[1])]
            if pts:
                series[name] = ([p[0] for p in pts], [p[1] for p in pts])
        return line_chart(self.out / "loss.png", series, title="loss vs step") if series else None

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
