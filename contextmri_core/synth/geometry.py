"""Where the head sits in the scanner: per-subject augmentation and slice/pixel coordinates.

Scanner (patient) coordinates are DICOM/ISMRMRD LPS in mm, origin at the isocentre:
``x`` = right -> left, ``y`` = anterior -> posterior, ``z`` = feet -> head. Axial images use the
project's axis order ``(E1, RO)``: phase encode along x (R->L), readout along y (A->P).
Head coordinates are MNI152 RAS mm (the template space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

#: MNI point (RAS mm) placed at the isocentre before augmentation (centre of the head).
HEAD_CENTRE_MNI = np.array([0.0, -16.0, 15.0])


@dataclass(frozen=True)
class Placement:
    """A rigid in-plane placement with isotropic scaling (the geometric augmentation).

    rotation_deg about the scanner z axis, ``scale`` (head size factor), ``shift_mm`` (x, y) in
    LPS, ``flip_lr`` mirrors the head left-right.
    """

    rotation_deg: float = 0.0
    scale: float = 1.0
    shift_mm: Tuple[float, float] = (0.0, 0.0)
    flip_lr: bool = False


def draw_placement(
    rng: np.random.Generator, augment: bool = True, flip_probability: float = 0.5
) -> Placement:
    """Random placement: rotation U(-8, 8) deg, scale U(0.92, 1.06), shift U(-6, 6) mm, LR flip.

    ``augment=False`` returns the identity placement (the rng is still advanced the same way,
    so later draws do not depend on it).
    """
    rot, scale, sx, sy, flip = (rng.uniform(-8, 8), rng.uniform(0.92, 1.06),
                                rng.uniform(-6, 6), rng.uniform(-6, 6),
                                rng.uniform() < flip_probability)
    if not augment:
        return Placement()
    return Placement(float(rot), float(scale), (float(sx), float(sy)), bool(flip))


def scanner_to_head(points_lps: np.ndarray, placement: Placement) -> np.ndarray:
    """Map scanner LPS points ``(3, ...)`` mm to MNI RAS head points ``(3, ...)`` mm."""
    x = points_lps[0] - placement.shift_mm[0]
    y = points_lps[1] - placement.shift_mm[1]
    th = np.deg2rad(placement.rotation_deg)
    c, s = np.cos(th), np.sin(th)
    xr, yr = (c * x + s * y) / placement.scale, (-s * x + c * y) / placement.scale
    zr = points_lps[2] / placement.scale
    ras_x, ras_y = -xr, -yr  # LPS -> RAS
    if placement.flip_lr:
        ras_x = -ras_x
    return np.stack([ras_x + HEAD_CENTRE_MNI[0], ras_y + HEAD_CENTRE_MNI[1],
                     zr + HEAD_CENTRE_MNI[2]])


def head_z_to_scanner(z_head_mm: float, placement: Placement) -> float:
    """Scanner z (mm) of an MNI head z (no tilt: only the scale matters)."""
    return float((z_head_mm - HEAD_CENTRE_MNI[2]) * placement.scale)


def pixel_centres_mm(num: int, pixel_mm: float, supersample: int = 1) -> np.ndarray:
    """``(num * supersample,)`` sample positions (mm) of a centred grid; pixel ``num // 2`` is 0.

    With ``supersample`` > 1 each pixel is split into that many equally spaced sub-samples.
    """
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    centres = (np.arange(num) - num // 2) * pixel_mm
    return (centres[:, None] + sub[None, :] * pixel_mm).reshape(-1)


def slice_positions_mm(
    rng: np.random.Generator, num_slices: int, placement: Placement,
    thickness_mm: float = 5.0, gap_mm: float = 1.0,
) -> np.ndarray:
    """Scanner z positions (mm) of an axial stack centred near MNI z = +20 (random +-8 mm).

    Spacing is ``thickness + gap``, shrunk when the stack would exceed 120 mm of head.
    """
    spacing = thickness_mm + gap_mm
    if num_slices > 1:
        spacing = min(spacing, 120.0 / (num_slices - 1))
    centre = head_z_to_scanner(20.0 + rng.uniform(-8, 8), placement)
    return centre + (np.arange(num_slices) - (num_slices - 1) / 2) * spacing
