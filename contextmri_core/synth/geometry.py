"""Where the head sits in the scanner: the per-subject placement and pixel coordinates.

Scanner (patient) coordinates are DICOM/ISMRMRD LPS in mm, origin at the isocentre:
``x`` = right -> left, ``y`` = anterior -> posterior, ``z`` = feet -> head. Head coordinates
are MNI152 RAS mm (the template space); the head centre ``HEAD_CENTRE_MNI`` sits at the
isocentre before the placement moves it. Slice directions and stacks: ``orientation``.
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


def placement_affine(placement: Placement) -> np.ndarray:
    """4x4 affine: scanner LPS mm -> MNI RAS head mm (the inverse of the placement)."""
    th = np.deg2rad(placement.rotation_deg)
    c, s = np.cos(th), np.sin(th)
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) / placement.scale
    lps_to_ras = np.diag([1.0 if placement.flip_lr else -1.0, -1.0, 1.0])
    linear = lps_to_ras @ rot
    shift = np.array([placement.shift_mm[0], placement.shift_mm[1], 0.0])
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = HEAD_CENTRE_MNI - linear @ shift
    return out


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``affine`` (4, 4) applied to points ``(3, ...)``; float32 out."""
    flat = np.asarray(points, np.float64).reshape(3, -1)
    out = affine[:3, :3] @ flat + affine[:3, 3:4]
    return out.reshape(np.shape(points)).astype(np.float32)


def scanner_to_head(points_lps: np.ndarray, placement: Placement) -> np.ndarray:
    """Map scanner LPS points ``(3, ...)`` mm to MNI RAS head points ``(3, ...)`` mm."""
    return apply_affine(placement_affine(placement), points_lps)


def pixel_centres_mm(num: int, pixel_mm: float, supersample: int = 1) -> np.ndarray:
    """``(num * supersample,)`` sample positions (mm) of a centred grid; pixel ``num // 2`` is 0.

    With ``supersample`` > 1 each pixel is split into that many equally spaced sub-samples.
    """
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    centres = (np.arange(num) - num // 2) * pixel_mm
    return (centres[:, None] + sub[None, :] * pixel_mm).reshape(-1)


def linear_weights(x: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Dense ``(len(x), len(lattice))`` float32 linear-interpolation weights from an evenly
    spaced ``lattice`` to the positions ``x`` (clamped to the lattice's end cells)."""
    step = float(lattice[1] - lattice[0])
    f = (np.asarray(x, np.float64) - float(lattice[0])) / step
    m0 = np.clip(np.floor(f).astype(int), 0, len(lattice) - 2)
    w = np.clip(f - m0, 0.0, 1.0).astype(np.float32)
    out = np.zeros((len(f), len(lattice)), np.float32)
    rows = np.arange(len(f))
    out[rows, m0] = 1.0 - w
    out[rows, m0 + 1] = w
    return out
