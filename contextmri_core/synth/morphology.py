"""Per-subject anatomy from the one template: head size/shape, a smooth random deformation and
age-related atrophy (all drawn from the subject's generator).

- Global scaling: factors along R, A, S (N(0, 4.5 %) each, clipped to +-12 %), about the head
  centre; on top of the placement's isotropic scale.
- Deformation (``deformation``): an SVF with a gyral-scale component (RMS 2.2 mm, 8 mm
  correlation), a lobar/head-shape component (RMS 4.5 mm, 30 mm correlation) and a ventricle
  component that pushes the lateral-ventricle walls outwards (or inwards) by
  ``ventricle_push_mm``. Measured effect: see ``tests/synth/test_morphology.py`` and the README.
- Atrophy: a level ``a`` = ``max(0, (age - 30) / 55)`` times a log-normal spread (sigma 0.35),
  so 0 below 30 and ~1 at 85. It widens the ventricles (``+2.5 a`` mm push) and erodes the
  parenchyma at every CSF border by ``thinning_mm = a`` mm (clipped to 1.6 mm): wider sulci,
  thinner cortex (``template_maps.eroded_tissue``).

Lesions are placed in template space, so they are warped with the anatomy.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.synth import deformation as dfm
from contextmri_core.synth.geometry import HEAD_CENTRE_MNI
from contextmri_core.synth.template_maps import lateral_ventricles, ventricle_index

logger = logging.getLogger(__name__)

SCALE_SD = 0.045
SCALE_CLIP = 0.12
GYRAL_RMS_MM, GYRAL_SIGMA_MM = 1.2, 8.0
SHAPE_RMS_MM, SHAPE_SIGMA_MM = 4.0, 30.0
VENTRICLE_SD_MM, VENTRICLE_PER_ATROPHY_MM = 0.6, 3.5
THINNING_PER_ATROPHY_MM, THINNING_MAX_MM = 1.0, 1.6
#: Smallest grid Jacobian accepted (a safe margin above folding, 0); below it the velocity is
#: scaled down. The smallest values (~0.1-0.3) lie in the air, where the field tapers off.
MIN_JACOBIAN = 0.05


@dataclass(frozen=True)
class Morphology:
    """One subject's anatomy relative to the template.

    scale_xyz:          head size factors along R, A, S (1 = template).
    atrophy:            age-related atrophy level (0 none, ~1 typical at 85 y).
    thinning_mm:        parenchyma erosion at CSF borders (mm, multiple of 0.1).
    ventricle_push_mm:  amplitude of the ventricle part of the velocity field (mm).
    deformation:        ``phi`` (subject -> template), None when nothing is warped.
    min_jacobian:       smallest ``det D phi`` on the grid (1 without deformation).
    """

    scale_xyz: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    atrophy: float = 0.0
    thinning_mm: float = 0.0
    ventricle_push_mm: float = 0.0
    deformation: Optional[dfm.Deformation] = None
    min_jacobian: float = 1.0


def atrophy_level(age_y: float, rng: np.random.Generator) -> float:
    """``max(0, (age - 30) / 55) * exp(N(0, 0.35))`` (one draw always taken)."""
    spread = float(np.exp(rng.normal(0.0, 0.35)))
    return max(0.0, (float(age_y) - 30.0) / 55.0) * spread


@functools.lru_cache(maxsize=1)
def ventricle_push_field() -> np.ndarray:
    """Unit-peak field ``(3, X, Y, Z)`` float32 on the SVF grid pointing into the lateral
    ventricles: the gradient of the ventricle mask smoothed by 3 mm."""
    smooth = ndi.gaussian_filter(lateral_ventricles().astype(np.float32), 1.5)
    grads = np.stack(np.gradient(smooth))  # per 2 mm voxel, along the template axes (R, A, S)
    idx = ventricle_index(dfm.grid_points())
    field = np.stack([ndi.map_coordinates(g, idx, order=1, mode="constant", cval=0.0,
                                          prefilter=False) for g in grads])
    peak = float(np.sqrt((field ** 2).sum(axis=0)).max())
    return (field / max(peak, 1e-12)).astype(np.float32)


def _velocity(rng: np.random.Generator, strength: float, push_mm: float) -> np.ndarray:
    shape = dfm.grid_shape()
    gyral = dfm.smooth_noise(rng, shape, GYRAL_SIGMA_MM)
    lobar = dfm.smooth_noise(rng, shape, SHAPE_SIGMA_MM)
    v = strength * (GYRAL_RMS_MM * gyral + SHAPE_RMS_MM * lobar)
    v = v * dfm.taper()
    return (v + push_mm * ventricle_push_field()).astype(np.float32)


def _integrate(velocity: np.ndarray) -> Tuple[dfm.Deformation, float]:
    """``exp(v)``; if its Jacobian is not safely positive, retry with 0.7 v (logged)."""
    for _ in range(6):
        deformation = dfm.integrate_velocity(velocity)
        det_min = float(dfm.jacobian_determinant(deformation).min())
        if det_min >= MIN_JACOBIAN:
            return deformation, det_min
        logger.warning("deformation Jacobian %.3f < %.2f: velocity scaled by 0.7",
                       det_min, MIN_JACOBIAN)
        velocity = 0.7 * velocity
    return deformation, det_min


def draw_morphology(
    rng: np.random.Generator, age_y: float, deformation_strength: float = 1.0,
    atrophy_strength: float = 1.0,
) -> Morphology:
    """Draw one subject's ``Morphology``; strengths scale the random parts (0 = template).

    The generator is advanced the same way whatever the strengths, so later draws do not
    depend on them.
    """
    scale = 1.0 + np.clip(rng.normal(0.0, SCALE_SD, size=3), -SCALE_CLIP, SCALE_CLIP)
    atrophy = atrophy_level(age_y, rng) * atrophy_strength
    push = (rng.normal(0.0, VENTRICLE_SD_MM) * deformation_strength
            + VENTRICLE_PER_ATROPHY_MM * atrophy)
    thinning = round(min(THINNING_PER_ATROPHY_MM * atrophy, THINNING_MAX_MM), 1)
    velocity_rng = np.random.default_rng(rng.integers(2 ** 63))
    scale = 1.0 + (scale - 1.0) * deformation_strength
    if deformation_strength <= 0 and push == 0:
        return Morphology(tuple(float(s) for s in scale), float(atrophy), thinning, 0.0)
    deformation, det_min = _integrate(_velocity(velocity_rng, deformation_strength, push))
    return Morphology(tuple(float(s) for s in scale), float(atrophy), thinning, float(push),
                      deformation, det_min)


def morphology_affine(morph: Morphology) -> np.ndarray:
    """4x4 affine: subject head RAS mm -> template frame (undo the global scaling)."""
    out = np.eye(4)
    inv = 1.0 / np.asarray(morph.scale_xyz, dtype=np.float64)
    out[:3, :3] = np.diag(inv)
    out[:3, 3] = HEAD_CENTRE_MNI - inv * HEAD_CENTRE_MNI
    return out


def head_to_template(points_ras: np.ndarray, morph: Morphology) -> np.ndarray:
    """Subject head points ``(3, ...)`` (MNI-aligned RAS mm) -> template points (float32)."""
    flat = np.asarray(points_ras, np.float64).reshape(3, -1)
    aff = morphology_affine(morph)
    q = (aff[:3, :3] @ flat + aff[:3, 3:4]).astype(np.float32).reshape(np.shape(points_ras))
    return q if morph.deformation is None else morph.deformation.apply(q)
