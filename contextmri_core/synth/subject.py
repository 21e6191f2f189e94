"""A simulated subject: demographics, head placement, anatomy variation and lesions (seeded).

Every subject is derived from ONE anatomy (the MNI152 average): head size and shape, a smooth
random deformation and age-related atrophy (``morphology``) make the anatomies differ; the
placement (rotation, scale, shift, flip) moves the head in the scanner. Where the slices go is
a property of each scan (``orientation.ScanGeometry``), not of the subject.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from contextmri_core.synth.anatomy import Lesion, draw_lesions
from contextmri_core.synth.geometry import Placement, draw_placement
from contextmri_core.synth.morphology import Morphology, draw_morphology


@dataclass(frozen=True)
class Subject:
    """One simulated person.

    patient_id/patient_name as written to the header; birth_date/study_date ISO ``YYYY-MM-DD``;
    study_time ``HH:MM:SS``; lesions are in template space (warped with the anatomy).
    """

    patient_id: str
    patient_name: str
    sex: str
    age_y: int
    birth_date: str
    study_date: str
    study_time: str
    placement: Placement
    morphology: Morphology
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


def draw_subject(
    rng: np.random.Generator, index: int, lesion_probability: float = 0.3, augment: bool = True,
    deformation_strength: float = 1.0, atrophy_strength: float = 1.0,
) -> Subject:
    """Draw subject number ``index``: sex, age U(18, 85), placement, morphology, lesions."""
    sex = "F" if rng.uniform() < 0.5 else "M"
    age = int(rng.integers(18, 86))
    birth, study, time = _dates(rng, age)
    placement = draw_placement(rng, augment=augment)
    morphology = draw_morphology(rng, age, deformation_strength, atrophy_strength)
    lesions = draw_lesions(rng, lesion_probability)
    pid = f"sim{index:05d}"
    return Subject(pid, f"SIM^{index:05d}", sex, age, birth, study, time, placement, morphology,
                   lesions)
