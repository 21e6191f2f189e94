"""Where a reconstructed slice sits in the scanner: ISMRMRD patient coordinates (mm, LPS as
DICOM's), from the slice's first imaging acquisition. Pure data; the readers fill it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Tuple

Vec3 = Tuple[float, float, float]


@dataclass(frozen=True)
class SliceGeometry:
    """Position of the slice centre and the read/phase/slice unit vectors, plus the indices
    and time stamps of the acquisition they came from.

    Image axes: rows of an ``(E1, RO)`` image run along ``phase_dir``, columns along
    ``read_dir``.
    """

    position: Vec3 = (0.0, 0.0, 0.0)
    read_dir: Vec3 = (1.0, 0.0, 0.0)
    phase_dir: Vec3 = (0.0, 1.0, 0.0)
    slice_dir: Vec3 = (0.0, 0.0, 1.0)
    patient_table_position: Vec3 = (0.0, 0.0, 0.0)
    measurement_uid: int = 0
    acquisition_time_stamp: int = 0
    physiology_time_stamp: Tuple[int, int, int] = (0, 0, 0)
    average: int = 0
    contrast: int = 0
    phase: int = 0
    repetition: int = 0
    set: int = 0


def vec3(values: Iterable[float]) -> Vec3:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


def stacked_geometry(num_slices: int, thickness_mm: float) -> Tuple[SliceGeometry, ...]:
    """Axial slices ``thickness_mm`` apart, centred on the isocentre: the geometry of files
    that carry none (fastMRI .h5 has no acquisition headers)."""
    centre = (num_slices - 1) / 2.0
    return tuple(SliceGeometry(position=(0.0, 0.0, (i - centre) * float(thickness_mm)))
                 for i in range(num_slices))


#: Largest tilt (degrees) of the slice normal from a patient axis that still names that plane:
#: a slice tilted by up to this much shows that plane's anatomy (e.g. an AC-PC aligned axial).
PLANE_TILT_MAX_DEG = 30.0
_PLANE_OF_AXIS = ("sagittal", "coronal", "axial")  # normal along LPS x, y, z


def slice_plane(slice_dir: Iterable[float], max_tilt_deg: float = PLANE_TILT_MAX_DEG) -> str:
    """"axial" | "coronal" | "sagittal" | "oblique" from the slice normal (LPS, any length).

    The plane of the patient axis nearest the normal when the angle between them is at most
    ``max_tilt_deg``; otherwise "oblique". A zero vector raises ``ValueError``.
    """
    n = [abs(float(v)) for v in slice_dir]
    norm = math.sqrt(sum(v * v for v in n))
    if len(n) != 3 or not norm > 0 or not math.isfinite(norm):
        raise ValueError(f"slice direction {tuple(slice_dir)} is not a 3-vector of length > 0")
    axis = max(range(3), key=lambda i: n[i])
    tilt = math.degrees(math.acos(min(1.0, n[axis] / norm)))
    return _PLANE_OF_AXIS[axis] if tilt <= max_tilt_deg + 1e-9 else "oblique"
