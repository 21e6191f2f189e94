"""Pure DICOM value helpers of the writer: text/decimal/date/time formatting, the series'
16-bit scaling, and the MR sequence terms (no pydicom here)."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from contextmri_core.data.metadata import ScanMetadata

logger = logging.getLogger(__name__)
MAX_STORED = 65535


# --- value formatting ------------------------------------------------------------------------

def text_value(value: Optional[str], limit: int, name: str) -> str:
    """``value`` as a DICOM string of at most ``limit`` characters ("" for None); backslashes
    (value delimiters) and control characters are replaced. Truncation is logged by name."""
    if value is None:
        return ""
    text = re.sub(r"[\x00-\x1f]", " ", str(value))
    text = (text.replace("\\", "/") if limit <= 64 else text).strip()
    if len(text) > limit:
        logger.warning("%s is longer than %d characters: truncated", name, limit)
        text = text[:limit].rstrip()
    return text


def decimal_string(value: float) -> str:
    """A decimal string of at most 16 characters."""
    for digits in range(12, 0, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    return "0"


def dicom_date(iso: Optional[str]) -> str:
    return iso.replace("-", "") if iso else ""  # YYYY-MM-DD -> DA


def dicom_time(iso: Optional[str]) -> str:
    return iso.replace(":", "") if iso else ""  # HH:MM:SS.ffffff -> TM


# --- scaling ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeriesScale:
    """real value = stored * slope + intercept; the window is in stored values (the MR Image
    IOD has no Modality LUT, so viewers window the stored values)."""

    slope: float
    intercept: float
    window_center: float
    window_width: float


def series_scale(images: Sequence[np.ndarray], kind: str) -> SeriesScale:
    """One scale for all ``images``: [0, max] (or [-pi, pi] for phase) onto 0..65535, window
    from the robust 1st/99.5th percentiles."""
    if kind == "phase":
        return SeriesScale(2 * math.pi / MAX_STORED, -math.pi, MAX_STORED / 2, MAX_STORED + 1)
    values = np.concatenate([np.asarray(i, np.float64).ravel() for i in images])
    values = np.clip(values[np.isfinite(values)], 0.0, None)
    top = float(values.max()) if values.size else 0.0
    slope = top / MAX_STORED if top > 0 else 1.0
    lo, hi = (np.percentile(values, [1.0, 99.5]) / slope if values.size else (0.0, 1.0))
    width = max(float(hi - lo), 1.0)
    return SeriesScale(slope, 0.0, float(lo) + width / 2, width)


def quantise(image: np.ndarray, scale: SeriesScale) -> np.ndarray:
    """``(ny, nx)`` uint16 stored values of ``image`` (non-finite -> 0, clipped to range)."""
    a = np.asarray(image, np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        logger.warning("%d non-finite pixel values written as 0", int(bad.sum()))
    stored = np.rint((np.where(bad, scale.intercept, a) - scale.intercept) / scale.slope)
    return np.clip(stored, 0, MAX_STORED).astype("<u2")


def mr_sequence(meta: ScanMetadata) -> Tuple[List[str], List[str]]:
    """(ScanningSequence, SequenceVariant) from ``meta.sequence`` and TI."""
    name = (meta.sequence or "").lower().replace("_", "").replace(" ", "")
    scanning: List[str] = []
    if "spinecho" in name or name in ("se", "tse", "fse"):
        scanning.append("SE")
    elif "gradient" in name or name in ("gre", "flash", "fisp", "spgr"):
        scanning.append("GR")
    elif "epi" in name or "echoplanar" in name:
        scanning.append("EP")
    if meta.ti_ms is not None:
        scanning.append("IR")
    variant = [v for v, hit in (("SK", "turbo" in name or "fast" in name or name == "tse"),
                                ("SP", "spoil" in name or name in ("flash", "spgr")),
                                ("MP", meta.ti_ms is not None)) if hit]
    return scanning or ["RM"], variant or ["NONE"]
