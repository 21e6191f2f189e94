"""The MNI152 (ICBM 2009a symmetric, 1 mm) templates that nilearn ships, loaded once per process.

The nilearn T1 template is skull-stripped, so the head around the brain is *built*: a signed
distance field to the intracranial surface (closed brain mask, computed on a 2 mm grid) lets
``anatomy`` lay skull, marrow, muscle, fat and skin at plausible depths. Nothing is downloaded:
the three NIfTI files are part of the nilearn wheel.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

#: Closing radius (mm) that turns the folded brain mask into a smooth intracranial hull.
_CLOSING_MM = 8.0
#: Grid step (mm) of the distance field (smooth, so 2 mm is plenty and 8x cheaper).
_DIST_STEP_MM = 2


@dataclass(frozen=True)
class Templates:
    """Template volumes on the MNI 1 mm grid, axes ``(x, y, z)`` = (R+, A+, S+).

    gm, wm:        (X, Y, Z) float32 tissue probabilities in [0, 1].
    distance_mm:   (X/2, Y/2, Z/2) float32 signed distance (mm) to the brain hull (+ outside),
                   on the 2 mm grid ``distance_step_mm``.
    affine:        (4, 4) voxel -> MNI mm of ``gm``/``wm``.
    """

    gm: np.ndarray
    wm: np.ndarray
    distance_mm: np.ndarray
    affine: np.ndarray
    distance_step_mm: int = _DIST_STEP_MM


def _ball(radius_vox: int) -> np.ndarray:
    r = np.arange(-radius_vox, radius_vox + 1)
    return (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius_vox ** 2


def _signed_distance(mask: np.ndarray, step_mm: float) -> np.ndarray:
    """Signed Euclidean distance (mm, + outside) to the boundary of a boolean volume."""
    outside = ndi.distance_transform_edt(~mask, sampling=step_mm)
    inside = ndi.distance_transform_edt(mask, sampling=step_mm)
    return (outside - inside).astype(np.float32)


def _hull_distance(gm: np.ndarray, wm: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Signed distance (2 mm grid) to the closed, hole-filled brain mask."""
    s = _DIST_STEP_MM
    brain = ((gm + wm) > 0.2) | (t1 > 0.05)
    coarse = brain[::s, ::s, ::s]
    radius = int(round(_CLOSING_MM / s))
    padded = np.pad(coarse, radius + 1)
    closed = ndi.binary_closing(padded, structure=_ball(radius))[
        radius + 1:-radius - 1, radius + 1:-radius - 1, radius + 1:-radius - 1]
    closed = ndi.binary_fill_holes(closed | coarse)
    return _signed_distance(closed, float(s))


@functools.lru_cache(maxsize=1)
def load_templates() -> Templates:
    """Load the nilearn MNI152 T1/GM/WM templates (cached: once per process, ~1 s)."""
    from nilearn import datasets  # imported lazily: nilearn is heavy

    t1_img = datasets.load_mni152_template(resolution=1)
    t1 = np.asarray(t1_img.get_fdata(dtype=np.float32))
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32))
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32))
    gm, wm = (np.clip(v / max(float(v.max()), 1e-6), 0, 1).astype(np.float32) for v in (gm, wm))
    t1 = t1 / max(float(t1.max()), 1e-6)
    distance = _hull_distance(gm, wm, t1)
    logger.debug("loaded MNI152 templates %s, distance grid %s", gm.shape, distance.shape)
    return Templates(gm=gm, wm=wm, distance_mm=distance, affine=np.asarray(t1_img.affine, float))
