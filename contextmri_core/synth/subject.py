"""A simulated subject: demographics, head placement, slice stack and lesions (all seeded).

Every subject shares ONE anatomy (the MNI152 average); subjects differ by placement (rotation,
scale, shift, flip), slice positions, lesions, relaxation jitter and demographics.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from contextmri_core.synth.anatomy import Lesion, draw_lesions
from contextmri_core.synth.geometry import (
    HEAD_CENTRE_MNI, Placement, draw_placement, slice_positions_mm,
)


@dataclass(frozen=True)
class Subject:
    """One simulated person.

    patient_id/patient_name as written to the header; birth_date/study_date ISO ``YYYY-MM-DD``;
    study_time ``HH:MM:SS``; slice_positions_mm ``(S,)`` scanner z (LPS, mm) of the slices.
    """

    patient_id: str
    patient_name: str
    sex: str
    age_y: int
    birth_date: str
    study_date: str
    study_time: str
    placement: Placement
    slice_positions_mm: Tuple[float, ...]
    slice_thickness_mm: float
    lesions: Tuple[Lesion, ...]


def _dates(rng: np.random.Generator, age_y: int) -> Tuple[str, str, str]:
    """(birth date, study date, study time) with exactly ``age_y`` completed years."""
    study = _dt.date(2019, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 6 * 365)))
    days_past_birthday = int(rng.integers(0, 365))
    last_birthday = study - _dt.timedelta(days=days_past_birthday)
    try:
        birth = last_birthday.replace(year=last_birthday.year - age_y)
    except ValueError:  # 29 February
        birth = (last_birthday - _dt.timedelta(days=1)).replace(year=last_birthday.year - age_y)
    seconds = int(rng.integers(7 * 3600, 19 * 3600))
    time = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return birth.isoformat(), study.isoformat(), time


def _head_z_range(positions: np.ndarray, placement: Placement, thickness: float
                  ) -> Tuple[float, float]:
    """MNI z range (mm) covered by the slice stack."""
    lo = positions.min() - thickness / 2
    hi = positions.max() + thickness / 2
    return (float(lo / placement.scale + HEAD_CENTRE_MNI[2]),
            float(hi / placement.scale + HEAD_CENTRE_MNI[2]))


def draw_subject(
    rng: np.random.Generator, index: int, num_slices: int, lesion_probability: float = 0.3,
    augment: bool = True, slice_thickness_mm: float = 5.0, slice_gap_mm: float = 1.0,
) -> Subject:
    """Draw subject number ``index``: sex, age U(18, 85), placement, slices, lesions."""
    sex = "F" if rng.uniform() < 0.5 else "M"
    age = int(rng.integers(18, 86))
    birth, study, time = _dates(rng, age)
    placement = draw_placement(rng, augment=augment)
    positions = slice_positions_mm(rng, num_slices, placement, slice_thickness_mm, slice_gap_mm)
    z_range = _head_z_range(positions, placement, slice_thickness_mm)
    lesions = draw_lesions(rng, lesion_probability, z_range)
    pid = f"sim{index:05d}"
    return Subject(pid, f"SIM^{index:05d}", sex, age, birth, study, time, placement,
                   tuple(float(p) for p in positions), float(slice_thickness_mm), lesions)
