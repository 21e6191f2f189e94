"""Tissue-fraction maps of axial head slices from the MNI152 templates (one averaged anatomy).

Brain: GM/WM probabilities of the template; CSF = intracranial hull minus GM and WM.
Head shell, laid outwards from the hull by signed distance (the template is skull-stripped):
subarachnoid CSF (to +1.5 mm), skull inner table, diploic marrow, outer table (to +7 mm),
galea/temporalis muscle (thicker laterally), subcutaneous fat, skin. Optional white-matter
lesions (seeded ellipsoids, some enhancing) and the choroid plexus glomus (enhances with
gadolinium). Every sample point is supersampled (2x2 in plane, 3 planes through the slice
thickness) and averaged, so fractions carry partial-volume effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.synth.geometry import (
    Placement, pixel_centres_mm, scanner_to_head,
)
from contextmri_core.synth.templates import Templates, load_templates

#: Tissue channels of a fraction map, in this order.
TISSUES: Tuple[str, ...] = ("wm", "gm", "csf", "bone", "marrow", "muscle", "fat",
                            "lesion", "lesion_enhancing", "choroid")
LESION_LABEL = "White Matter Lesion"
_T = {name: i for i, name in enumerate(TISSUES)}
# Choroid plexus glomus in the ventricular atria (MNI RAS mm; centroid of the atrial CSF).
_CHOROID_CENTRES = ((23.0, -39.0, 14.0), (-23.0, -39.0, 14.0))
_CHOROID_RADII = (4.5, 7.0, 5.0)


@dataclass(frozen=True)
class Lesion:
    """An ellipsoidal white-matter lesion in MNI RAS mm; ``rotation_deg`` about z."""

    centre_mm: Tuple[float, float, float]
    radii_mm: Tuple[float, float, float]
    rotation_deg: float
    enhancing: bool = False
    label: str = LESION_LABEL


def draw_lesions(
    rng: np.random.Generator, probability: float, z_range_head_mm: Tuple[float, float],
    max_count: int = 6,
) -> Tuple[Lesion, ...]:
    """With ``probability``, 1..max_count lesions centred in deep WM (template WM > 0.95)
    inside ``z_range_head_mm`` (MNI z); radii 2.5-8 mm; each enhancing with probability 0.4."""
    if not rng.uniform() < probability:
        return ()
    tpl = load_templates()
    zlo, zhi = sorted(z_range_head_mm)
    cand = np.argwhere(tpl.wm > 0.95)
    mm = cand * np.diag(tpl.affine)[:3] + tpl.affine[:3, 3]
    mm = mm[(mm[:, 2] >= zlo) & (mm[:, 2] <= zhi)]
    if mm.shape[0] == 0:
        return ()
    count = int(rng.integers(1, max_count + 1))
    picks = mm[rng.choice(mm.shape[0], size=count, replace=False)]
    return tuple(
        Lesion(tuple(float(v) for v in c), tuple(float(r) for r in rng.uniform(2.5, 8, size=3)),
               float(rng.uniform(0, 180)), bool(rng.uniform() < 0.4))
        for c in picks)


def _sample_points(
    shape: Tuple[int, int], pixel_mm: Tuple[float, float], z_mm: float, thickness_mm: float,
) -> np.ndarray:
    """LPS points ``(3, P, ny*2, nx*2)`` of one slice: P=3 planes, 2x2 in-plane supersampling."""
    xs = pixel_centres_mm(shape[0], pixel_mm[0], 2)  # E1: x (R->L)
    ys = pixel_centres_mm(shape[1], pixel_mm[1], 2)  # RO: y (A->P)
    zs = z_mm + thickness_mm * np.array([-1 / 3, 0.0, 1 / 3])
    z3, x3, y3 = np.meshgrid(zs, xs, ys, indexing="ij")
    return np.stack([x3, y3, z3])


def _interp(volume: np.ndarray, index: np.ndarray, cval: float) -> np.ndarray:
    return ndi.map_coordinates(volume, index, order=1, mode="constant", cval=cval,
                               prefilter=False)


def _ellipsoid(head: np.ndarray, centre, radii, rotation_deg: float) -> np.ndarray:
    """Boolean: head points ``(3, ...)`` inside the ellipsoid."""
    d = head - np.asarray(centre, dtype=float).reshape((3,) + (1,) * (head.ndim - 1))
    th = np.deg2rad(rotation_deg)
    u = np.cos(th) * d[0] + np.sin(th) * d[1]
    v = -np.sin(th) * d[0] + np.cos(th) * d[1]
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (d[2] / radii[2]) ** 2 <= 1.0


def _band(d: np.ndarray, lo: float, hi) -> np.ndarray:
    return ((d >= lo) & (d < hi)).astype(np.float32)


def _shell(d: np.ndarray, head: np.ndarray) -> dict:
    """Fractions of the head shell from the signed hull distance ``d`` (mm)."""
    rho = np.hypot(head[0], head[1] + 16.0) + 1e-6
    temporal = (head[0] / rho) ** 2 * np.exp(-((head[2] - 5.0) / 30.0) ** 2)
    muscle_end = 8.0 + 6.0 * temporal
    fat_end = muscle_end + 4.5
    return {
        "bone": _band(d, 1.5, 3.0) + _band(d, 5.5, 7.0),
        "marrow": _band(d, 3.0, 5.5),
        "muscle": _band(d, 7.0, muscle_end) + _band(d, fat_end, fat_end + 1.5),
        "fat": _band(d, muscle_end, fat_end),
    }


def _fractions(tpl: Templates, head: np.ndarray, lesions: Tuple[Lesion, ...]) -> np.ndarray:
    """Per-sample tissue fractions ``(T, ...)`` at MNI head points ``(3, ...)``."""
    origin, step = tpl.affine[:3, 3], np.diag(tpl.affine)[:3]
    idx = (head - origin.reshape((3,) + (1,) * (head.ndim - 1))) / step.reshape(
        (3,) + (1,) * (head.ndim - 1))
    gm, wm = _interp(tpl.gm, idx, 0.0), _interp(tpl.wm, idx, 0.0)
    d = _interp(tpl.distance_mm, idx / tpl.distance_step_mm, 100.0)
    inside = (d < 1.5).astype(np.float32)
    brain = np.minimum(gm + wm, 1.0) * inside
    norm = np.where(gm + wm > 1.0, 1.0 / np.maximum(gm + wm, 1e-6), 1.0)
    out = np.zeros((len(TISSUES),) + head.shape[1:], dtype=np.float32)
    out[_T["gm"]], out[_T["wm"]] = gm * norm * inside, wm * norm * inside
    out[_T["csf"]] = np.clip(inside - brain, 0.0, 1.0)
    for name, frac in _shell(d, head).items():
        out[_T[name]] = frac
    for les in lesions:
        ch = _T["lesion_enhancing" if les.enhancing else "lesion"]
        take = _ellipsoid(head, les.centre_mm, les.radii_mm, les.rotation_deg) * out[_T["wm"]]
        out[ch] += take
        out[_T["wm"]] -= take
    for centre in _CHOROID_CENTRES:
        take = _ellipsoid(head, centre, _CHOROID_RADII, 0.0) * 0.7 * out[_T["csf"]]
        out[_T["choroid"]] += take
        out[_T["csf"]] -= take
    return out


def tissue_slice(
    shape: Tuple[int, int], pixel_mm: Tuple[float, float], z_mm: float, thickness_mm: float,
    placement: Placement, lesions: Tuple[Lesion, ...] = (),
) -> np.ndarray:
    """Tissue fractions ``(T, ny, nx)`` float32 of one axial slice (order ``TISSUES``).

    shape:     (E1, RO) pixels of the grid; pixel ``n // 2`` is at the isocentre.
    pixel_mm:  (E1, RO) pixel size in mm; ``z_mm`` scanner slice position; placement: the
               subject's augmentation. Fractions sum to <= 1 (air is the rest).
    """
    points = _sample_points(shape, pixel_mm, z_mm, thickness_mm)
    frac = _fractions(load_templates(), scanner_to_head(points, placement), lesions)
    t, p = frac.shape[:2]
    frac = frac.reshape(t, p, shape[0], 2, shape[1], 2)
    return frac.mean(axis=(1, 3, 5)).astype(np.float32)


def lesion_mask(fractions: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean ``(..., ny, nx)``: pixels that are mostly lesion (enhancing or not)."""
    les = fractions[..., _T["lesion"], :, :] + fractions[..., _T["lesion_enhancing"], :, :]
    return les >= threshold


def tissue_index(name: str) -> int:
    """Channel of ``name`` in ``TISSUES``."""
    return _T[name]
