"""Tissue fractions at template points, from the MNI152 templates (one averaged anatomy).

Brain: GM/WM probabilities of the template; CSF = intracranial hull minus GM and WM.
Head shell (the template is skull-stripped; ``templates``): subarachnoid CSF (to +1.5 mm from
the hull), skull inner table, diploic marrow, outer table (to +7 mm), then soft tissue
(galea/temporalis muscle, skull base, neck) up to 6 mm under the outer head surface,
subcutaneous fat and 1.5 mm of skin. Optional white-matter
lesions (seeded ellipsoids, some enhancing) and the choroid plexus glomus (enhances with
gadolinium). Points are template (MNI RAS mm) points, already warped by the subject's
morphology (so lesions move with the anatomy); ``render`` supersamples a slice and averages,
so pixels carry partial volume.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.synth.templates import load_templates

#: Tissue channels of a fraction map, in this order.
TISSUES: Tuple[str, ...] = ("wm", "gm", "csf", "bone", "marrow", "muscle", "fat",
                            "lesion", "lesion_enhancing", "choroid")
LESION_LABEL = "White Matter Lesion"
#: MNI z range (mm) of lesion centres: the cerebral white matter.
LESION_Z_RANGE_MM = (-10.0, 60.0)
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
    rng: np.random.Generator, probability: float,
    z_range_head_mm: Tuple[float, float] = LESION_Z_RANGE_MM, max_count: int = 6,
) -> Tuple[Lesion, ...]:
    """With ``probability``, 1..max_count lesions centred in deep WM (template WM > 0.95)
    inside ``z_range_head_mm`` (MNI z); radii 2.5-8 mm; each enhancing with probability 0.4."""
    if not rng.uniform() < probability:
        return ()
    zlo, zhi = sorted(z_range_head_mm)
    mm = _deep_wm_mm()
    mm = mm[(mm[:, 2] >= zlo) & (mm[:, 2] <= zhi)]
    if mm.shape[0] == 0:
        return ()
    count = int(rng.integers(1, max_count + 1))
    picks = mm[rng.choice(mm.shape[0], size=count, replace=False)]
    return tuple(
        Lesion(tuple(float(v) for v in c), tuple(float(r) for r in rng.uniform(2.5, 8, size=3)),
               float(rng.uniform(0, 180)), bool(rng.uniform() < 0.4))
        for c in picks)


@functools.lru_cache(maxsize=1)
def _deep_wm_mm() -> np.ndarray:
    """MNI mm ``(N, 3)`` of the template voxels with WM > 0.95."""
    tpl = load_templates()
    return np.argwhere(tpl.wm > 0.95) * np.diag(tpl.affine)[:3] + tpl.affine[:3, 3]


def _interp(volume: np.ndarray, index: np.ndarray, cval: float) -> np.ndarray:
    return ndi.map_coordinates(volume, index, order=1, mode="constant", cval=cval,
                               prefilter=False)


def _near(head: np.ndarray, centre, radius_mm: float) -> bool:
    """Whether points ``(3, P, ny, nx)`` (a supersampled slice) may come within
    ``radius_mm`` of ``centre``: checked on a <= 64x64 subgrid with the subgrid's own gaps
    as margin (other shapes: always True)."""
    if head.ndim != 4:
        return True
    ky, kx = max(1, head.shape[2] // 64), max(1, head.shape[3] // 64)
    sub = head[:, :, ::ky, ::kx]
    margin = sum(float(np.sqrt((np.diff(sub, axis=a) ** 2).sum(axis=0)).max(initial=0.0))
                 for a in (1, 2, 3))
    d2 = np.sum((sub - np.asarray(centre, np.float32).reshape(3, 1, 1, 1)) ** 2, axis=0)
    return bool(d2.min() <= (radius_mm + margin) ** 2)


def _ellipsoid(head: np.ndarray, centre, radii, rotation_deg: float) -> np.ndarray:
    """Boolean: head points ``(3, ...)`` inside the ellipsoid."""
    d = head - np.asarray(centre, dtype=np.float32).reshape((3,) + (1,) * (head.ndim - 1))
    th = np.deg2rad(rotation_deg)
    u = np.cos(th) * d[0] + np.sin(th) * d[1]
    v = -np.sin(th) * d[0] + np.cos(th) * d[1]
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (d[2] / radii[2]) ** 2 <= 1.0


def _band(d: np.ndarray, lo: float, hi) -> np.ndarray:
    return ((d >= lo) & (d < hi)).astype(np.float32)


def _shell(d: np.ndarray, e: np.ndarray) -> dict:
    """Fractions of the head shell from the signed distances to the intracranial surface
    ``d`` and to the outer head surface ``e`` (mm, + outside): skull layers by ``d``;
    beyond the outer table soft tissue, then fat and skin under the head surface by ``e``."""
    beyond = d >= 7.0
    return {
        "bone": _band(d, 1.5, 3.0) + _band(d, 5.5, 7.0),
        "marrow": _band(d, 3.0, 5.5),
        "muscle": beyond * (_band(e, -1e9, -6.0) + _band(e, -1.5, 0.0)),
        "fat": beyond * _band(e, -6.0, -1.5),
    }


def _inside_ellipsoid(head: np.ndarray, centre, radii, rotation_deg: float) -> np.ndarray:
    """Float32 0/1 of ``_ellipsoid``; skips the work when no point comes near."""
    if not _near(head, centre, max(radii) + 4.0):
        return np.zeros(head.shape[1:], np.float32)
    return _ellipsoid(head, centre, radii, rotation_deg).astype(np.float32)


def tissue_fractions(
    head: np.ndarray, lesions: Tuple[Lesion, ...] = (), thinning_mm: float = 0.0,
) -> np.ndarray:
    """Per-sample tissue fractions ``(T, ...)`` float32 at template points ``(3, ...)`` (MNI
    mm), with the parenchyma eroded by ``thinning_mm`` (atrophy, ``template_maps``)."""
    from contextmri_core.synth.template_maps import eroded_tissue

    tpl = load_templates()
    tgm, twm = eroded_tissue(float(thinning_mm))
    shape = (3,) + (1,) * (head.ndim - 1)
    origin = tpl.affine[:3, 3].astype(np.float32).reshape(shape)
    step = np.diag(tpl.affine)[:3].astype(np.float32).reshape(shape)
    idx = (head - origin) / step
    coarse = idx / np.float32(tpl.distance_step_mm)
    d = _interp(tpl.distance_mm, coarse, 100.0)
    coarse[2] += np.float32(tpl.envelope_pad_vox)
    e = _interp(tpl.envelope_mm, coarse, 100.0)
    within = d < 1.5
    gm, wm = np.zeros(d.shape, np.float32), np.zeros(d.shape, np.float32)
    sub = idx[:, within]  # the brain templates are 0 outside the hull: skip those points
    gm[within], wm[within] = _interp(tgm, sub, 0.0), _interp(twm, sub, 0.0)
    inside = within.astype(np.float32)
    total = gm + wm
    norm = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0).astype(np.float32)
    out = np.zeros((len(TISSUES),) + head.shape[1:], dtype=np.float32)
    out[_T["gm"]], out[_T["wm"]] = gm * norm * inside, wm * norm * inside
    out[_T["csf"]] = np.clip(inside - np.minimum(total, 1.0) * inside, 0.0, 1.0)
    for name, frac in _shell(d, e).items():
        out[_T[name]] = frac
    for les in lesions:
        ch = _T["lesion_enhancing" if les.enhancing else "lesion"]
        take = _inside_ellipsoid(head, les.centre_mm, les.radii_mm, les.rotation_deg)
        take *= out[_T["wm"]]
        out[ch] += take
        out[_T["wm"]] -= take
    for centre in _CHOROID_CENTRES:
        take = _inside_ellipsoid(head, centre, _CHOROID_RADII, 0.0) * 0.7 * out[_T["csf"]]
        out[_T["choroid"]] += take
        out[_T["csf"]] -= take
    return out


def lesion_mask(fractions: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean ``(..., ny, nx)``: pixels that are mostly lesion (enhancing or not)."""
    les = fractions[..., _T["lesion"], :, :] + fractions[..., _T["lesion_enhancing"], :, :]
    return les >= threshold


def tissue_index(name: str) -> int:
    """Channel of ``name`` in ``TISSUES``."""
    return _T[name]
