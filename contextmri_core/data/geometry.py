"""Where a reconstructed slice sits in the scanner: ISMRMRD patient coordinates (mm, LPS as
DICOM's), from the slice's first imaging acquisition. Pure data; the readers fill it."""

from __future__ import annotations

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
