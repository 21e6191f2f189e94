"""The MNI152 (ICBM 2009a symmetric, 1 mm) templates that nilearn ships, loaded once per process.

The nilearn T1 template is skull-stripped, so the head around the brain is *built* from two
signed distance fields on a 2 mm grid: to the intracranial surface (the brain mask closed by
8 mm and filled), along which ``anatomy`` lays CSF and the skull, and to the outer surface
of the head (the envelope: everything within 14 mm of the intracranial surface, 20 mm over
the temporal fossae, plus an elliptic neck below MNI z = -30, closed by 20 mm), under which
lie skin and fat, with soft tissue filling the rest (scalp muscle, skull base, neck). The
template ends at MNI z = -72; the envelope grid goes 60 mm further down (the neck). There
are no orbits, sinuses, vessels or vertebrae. Nothing is downloaded: the three NIfTI files
are part of the nilearn wheel.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

#: Closing radius (mm) that turns the folded brain mask into a smooth intracranial hull.
_CLOSING_MM = 8.0
#: Grid step (mm) of the distance field (smooth, so 2 mm is plenty and 8x cheaper).
_DIST_STEP_MM = 2
#: Head envelope: skin depth over the intracranial surface (mm), extra over the temporal
#: fossae, closing radius (mm), neck (below MNI z, semi-axes x/y and centre y in mm) and the
#: extra grid below the template (2 mm voxels).
_SKIN_DEPTH_MM, _TEMPORAL_EXTRA_MM, _ENVELOPE_CLOSING_MM = 14.0, 6.0, 20.0
_NECK_BELOW_Z_MM, _NECK_AXES_MM, _NECK_CENTRE_Y_MM = -30.0, (55.0, 60.0), -15.0
_NECK_PAD_VOX = 30


@dataclass(frozen=True)
class Templates:
    """Template volumes on the MNI 1 mm grid, axes ``(x, y, z)`` = (R+, A+, S+).

    gm, wm:        (X, Y, Z) float32 tissue probabilities in [0, 1].
    distance_mm:   (X/2, Y/2, Z/2) float32 signed distance (mm) to the brain hull (+ outside),
                   on the 2 mm grid ``distance_step_mm``.
    envelope_mm:   (X/2, Y/2, Z/2 + pad) float32 signed distance (mm) to the outer head surface
                   on the same grid, ``envelope_pad_vox`` extra voxels below it (the neck).
    affine:        (4, 4) voxel -> MNI mm of ``gm``/``wm``.
    """

    gm: np.ndarray
    wm: np.ndarray
    distance_mm: np.ndarray
    envelope_mm: np.ndarray
    affine: np.ndarray
    distance_step_mm: int = _DIST_STEP_MM
    envelope_pad_vox: int = _NECK_PAD_VOX


def _close(mask: np.ndarray, radius_mm: float, step_mm: float) -> np.ndarray:
    """Morphological closing by a ball of ``radius_mm`` (two distance transforms), holes
    filled; the volume is padded so that nothing is clipped at its border."""
    pad = int(np.ceil(radius_mm / step_mm)) + 2
    padded = np.pad(mask, pad)
    dilated = ndi.distance_transform_edt(~padded, sampling=step_mm) <= radius_mm
    closed = ndi.distance_transform_edt(dilated, sampling=step_mm) > radius_mm
    return ndi.binary_fill_holes(closed[pad:-pad, pad:-pad, pad:-pad] | mask)


def _signed_distance(mask: np.ndarray, step_mm: float) -> np.ndarray:
    """Signed Euclidean distance (mm, + outside) to the boundary of a boolean volume,
    smoothed by one voxel so that its level sets (the shell layers) show no voxel steps."""
    outside = ndi.distance_transform_edt(~mask, sampling=step_mm)
    inside = ndi.distance_transform_edt(mask, sampling=step_mm)
    return ndi.gaussian_filter((outside - inside).astype(np.float32), 1.0, mode="nearest")


def _hull_distance(gm: np.ndarray, wm: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Signed distance (2 mm grid) to the closed, hole-filled brain mask."""
    s = _DIST_STEP_MM
    brain = ((gm + wm) > 0.2) | (t1 > 0.05)
    return _signed_distance(_close(brain[::s, ::s, ::s], _CLOSING_MM, float(s)), float(s))


def temporal_weight(x_mm, y_mm, z_mm):
    """0..1: how far a point (MNI mm) lies over the temporal fossa (lateral, near z = 5)."""
    rho = np.hypot(x_mm, y_mm + 16.0) + 1e-6
    return (x_mm / rho) ** 2 * np.exp(-((z_mm - 5.0) / 30.0) ** 2)


def _envelope_distance(hull_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Signed distance (2 mm grid, padded below by the neck) to the outer head surface."""
    s, pad = _DIST_STEP_MM, _NECK_PAD_VOX
    shape = (hull_mm.shape[0], hull_mm.shape[1], hull_mm.shape[2] + pad)
    x, y, z = (affine[a, 3] + s * np.arange(n) - (s * pad if a == 2 else 0)
               for a, n in enumerate(shape))
    gx, gy, gz = np.meshgrid(x, y, z, indexing="ij")
    hull = np.pad(hull_mm, ((0, 0), (0, 0), (pad, 0)), constant_values=1e3)
    skin = hull < _SKIN_DEPTH_MM + _TEMPORAL_EXTRA_MM * temporal_weight(gx, gy, gz)
    ax, ay = _NECK_AXES_MM
    neck = ((gx / ax) ** 2 + ((gy - _NECK_CENTRE_Y_MM) / ay) ** 2 <= 1.0) & (
        gz < _NECK_BELOW_Z_MM)
    return _signed_distance(_close(skin | neck, _ENVELOPE_CLOSING_MM, float(s)), float(s))


def _load_volumes() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t1, gm, wm, affine) from nilearn's loaders (the files ship in the nilearn wheel)."""
    from nilearn import datasets  # imported lazily: nilearn.datasets is heavy (~5 s)

    imgs = {"t1": datasets.load_mni152_template(resolution=1),
            "gm": datasets.load_mni152_gm_template(resolution=1),
            "wm": datasets.load_mni152_wm_template(resolution=1)}
    t1, gm, wm = (np.asarray(imgs[k].get_fdata(dtype=np.float32)) for k in ("t1", "gm", "wm"))
    return t1, gm, wm, np.asarray(imgs["t1"].affine, float)


@functools.lru_cache(maxsize=1)
def load_templates() -> Templates:
    """Load the MNI152 T1/GM/WM templates and build the distance fields (cached: once per
    process, ~5-10 s with the nilearn import)."""
    t1, gm, wm, affine = _load_volumes()
    gm, wm = (np.clip(v / max(float(v.max()), 1e-6), 0, 1).astype(np.float32) for v in (gm, wm))
    t1 = t1 / max(float(t1.max()), 1e-6)
    distance = _hull_distance(gm, wm, t1)
    envelope = _envelope_distance(distance, affine)
    logger.debug("loaded MNI152 templates %s, distance grid %s", gm.shape, distance.shape)
    return Templates(gm=gm, wm=wm, distance_mm=distance, envelope_mm=envelope, affine=affine)
