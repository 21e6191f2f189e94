"""Slice orientation and the slice stack of one simulated scan (scanner LPS mm).

Read / phase / slice directions per plane follow the project's image convention
(``data.geometry``: rows of an ``(E1, RO)`` image run along ``phase_dir``, columns along
``read_dir``) and the clinical choice of phase-encode direction: phase R->L for axial and
coronal brain slices, A->P for sagittal; the readout runs A->P (axial) or S->I (coronal,
sagittal). The transposed image ``(RO rows, E1 columns)``, as fastMRI stores it, is then the
standard radiological view: axial anterior up and the patient's right on the left;
coronal head up, right on the left; sagittal head up, anterior on the left.
``slice_dir = phase_dir x read_dir``. Oblique stacks tilt all three by up to
``oblique_max_deg`` about a random in-plane axis.

Pixel ``(i, j)`` of slice ``k`` sits at ``position_k + (i - n//2) dy phase + (j - n//2) dx read``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from contextmri_core.data.geometry import slice_plane
from contextmri_core.errors import ConfigError

Vec3 = Tuple[float, float, float]

PLANES: Tuple[str, ...] = ("axial", "coronal", "sagittal")
#: Protocol-name prefix of each plane, as consoles write it ("AX T2", "COR T1", "SAG FLAIR").
PLANE_PREFIX: Dict[str, str] = {"axial": "AX", "coronal": "COR", "sagittal": "SAG"}
#: (read_dir, phase_dir) of each plane in LPS.
STANDARD_AXES: Dict[str, Tuple[Vec3, Vec3]] = {
    "axial": ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0)),
    "coronal": ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
    "sagittal": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}
#: Template (MNI RAS) axis along each plane's normal, and the range (mm, relative to the head
#: centre, before head scaling) that slice stacks are centred in ("central") or that a
#: whole-brain stack covers ("brain").
_NORMAL_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
CENTRAL_RANGE_MM = {"axial": (-3.0, 13.0), "coronal": (-14.0, 16.0), "sagittal": (-10.0, 10.0)}
BRAIN_RANGE_MM = {"axial": (-60.0, 60.0), "coronal": (-84.0, 84.0), "sagittal": (-68.0, 68.0)}
#: Longest contiguous stack (mm) the ``stack`` layout builds.
MAX_STACK_MM = 120.0


@dataclass(frozen=True)
class ScanGeometry:
    """Where the slices of one scan are: unit directions (LPS), a square recon grid of
    ``matrix`` pixels of ``pixel_spacing_mm``, the slice thickness, the slice centres
    ``positions_mm`` and each slice's index ``slice_indices`` in its (whole) stack.
    ``plane`` is the standard plane the stack was tilted from by ``tilt_deg``."""

    plane: str
    read_dir: Vec3
    phase_dir: Vec3
    slice_dir: Vec3
    matrix: int
    pixel_spacing_mm: float
    slice_thickness_mm: float
    positions_mm: Tuple[Vec3, ...]
    slice_indices: Tuple[int, ...]
    tilt_deg: float = 0.0

    @property
    def fov_mm(self) -> float:
        """In-plane field of view (square), mm."""
        return self.matrix * self.pixel_spacing_mm

    @property
    def num_slices(self) -> int:
        return len(self.positions_mm)

    @property
    def plane_label(self) -> str:
        """``data.geometry.slice_plane`` of the slice normal (what a reader derives)."""
        return slice_plane(self.slice_dir)


def normal_axis(plane: str) -> int:
    """Template axis (0 R, 1 A, 2 S) along the normal of ``plane``."""
    return _NORMAL_AXIS[plane]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues rotation matrix about the unit ``axis``."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def oriented_axes(plane: str, rng: np.random.Generator, oblique_max_deg: float = 0.0
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(read, phase, slice) unit vectors of ``plane`` tilted by U(0, oblique_max_deg) about a
    random in-plane axis, and the tilt in degrees (two draws are always taken)."""
    if plane not in STANDARD_AXES:
        raise ConfigError(f"plane {plane!r}: use one of {', '.join(PLANES)}")
    read, phase = (_unit(v) for v in STANDARD_AXES[plane])
    psi, frac = rng.uniform(0.0, 2 * np.pi), rng.uniform()
    tilt = float(frac * oblique_max_deg)
    if tilt > 0:
        rot = _rotation(_unit(np.cos(psi) * read + np.sin(psi) * phase), np.deg2rad(tilt))
        read, phase = rot @ read, rot @ phase
    return read, phase, _unit(np.cross(phase, read)), tilt


def stack_offsets_mm(rng: np.random.Generator, plane: str, num_slices: int, thickness_mm: float,
                     gap_mm: float, head_scale: float, layout: str
                     ) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """Slice-centre offsets (mm along the normal from the isocentre) and slice indices.

    ``layout="stack"``: ``num_slices`` contiguous slices (``thickness + gap`` apart, shrunk to
    fit ``MAX_STACK_MM``) centred in ``CENTRAL_RANGE_MM``; indices 0..S-1.
    ``layout="spread"``: a whole-brain stack over ``BRAIN_RANGE_MM`` (random start), of which
    ``num_slices`` are picked at random; indices are their places in that stack.
    """
    spacing = thickness_mm + gap_mm
    if layout == "stack":
        if num_slices > 1:
            spacing = min(spacing, MAX_STACK_MM / (num_slices - 1))
        centre = rng.uniform(*CENTRAL_RANGE_MM[plane]) * head_scale
        offsets = centre + (np.arange(num_slices) - (num_slices - 1) / 2) * spacing
        return offsets, tuple(range(num_slices))
    if layout != "spread":
        raise ConfigError(f"layout {layout!r}: use 'stack' or 'spread'")
    lo, hi = (v * head_scale for v in BRAIN_RANGE_MM[plane])
    start = lo + rng.uniform(0.0, spacing)
    total = max(int(np.floor((hi - start) / spacing)) + 1, num_slices)
    picks = np.sort(rng.choice(total, size=num_slices, replace=False))
    return start + picks * spacing, tuple(int(p) for p in picks)


def draw_geometry(
    rng: np.random.Generator, plane: str, matrix: int, pixel_spacing_mm: float,
    slice_thickness_mm: float, num_slices: int, slice_gap_mm: float = 1.0,
    oblique_max_deg: float = 0.0, head_scale: float = 1.0, layout: str = "stack",
) -> ScanGeometry:
    """One scan's ``ScanGeometry``: tilted axes, then the slice centres along the normal
    (the FOV is centred on the isocentre in plane)."""
    read, phase, normal, tilt = oriented_axes(plane, rng, oblique_max_deg)
    offsets, indices = stack_offsets_mm(rng, plane, num_slices, slice_thickness_mm,
                                        slice_gap_mm, head_scale, layout)
    vec = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return ScanGeometry(plane, vec(read), vec(phase), vec(normal), int(matrix),
                        float(pixel_spacing_mm), float(slice_thickness_mm),
                        tuple(vec(o * normal) for o in offsets), indices, tilt)
