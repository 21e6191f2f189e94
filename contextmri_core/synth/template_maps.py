"""Maps derived from the MNI152 templates once per process: the lateral ventricles and the
parenchyma edge, which age-related atrophy enlarges and erodes.

- ``lateral_ventricles``: boolean ``(X/2, Y/2, Z/2)`` on the 2 mm grid of the hull distance:
  CSF (> 0.6) deeper than 15 mm inside the intracranial hull, the two large off-midline
  components (about 8 ml each in the ICBM 2009a template).
- ``eroded_tissue(thinning_mm)``: GM and WM with the parenchyma surface moved inwards by
  ``thinning_mm`` wherever it borders CSF (sulci, ventricles, outer surface). To first order,
  ``p' = p - d |grad p|`` for the parenchyma probability ``p = gm + wm``; GM and WM lose in
  proportion. Valid for ``d`` up to ~2 mm (the width of the template's partial-volume edge).
"""

from __future__ import annotations

import functools
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.synth.templates import load_templates

#: Depth (mm) inside the hull below which deep CSF counts as ventricle, and the CSF level.
_VENTRICLE_DEPTH_MM = 15.0
_VENTRICLE_CSF = 0.6
_VENTRICLE_MIN_ML = 4.0


@functools.lru_cache(maxsize=1)
def lateral_ventricles() -> np.ndarray:
    """Boolean ``(X/2, Y/2, Z/2)`` lateral-ventricle mask on the 2 mm distance grid."""
    tpl = load_templates()
    s = tpl.distance_step_mm
    shape = tpl.distance_mm.shape
    gm = tpl.gm[::s, ::s, ::s][: shape[0], : shape[1], : shape[2]]
    wm = tpl.wm[::s, ::s, ::s][: shape[0], : shape[1], : shape[2]]
    csf = np.clip((tpl.distance_mm < 0) - (gm + wm), 0.0, 1.0)
    deep = (csf > _VENTRICLE_CSF) & (tpl.distance_mm < -_VENTRICLE_DEPTH_MM)
    labels, count = ndi.label(deep)
    sizes_ml = ndi.sum(deep, labels, range(1, count + 1)) * s ** 3 / 1000.0
    centres = ndi.center_of_mass(deep, labels, range(1, count + 1))
    mid_x = (0.0 - tpl.affine[0, 3]) / (tpl.affine[0, 0] * s)
    keep = [i + 1 for i, (ml, c) in enumerate(zip(sizes_ml, centres))
            if ml >= _VENTRICLE_MIN_ML and abs(c[0] - mid_x) * s > 5.0]
    return np.isin(labels, keep)


def ventricle_index(points_mm: np.ndarray) -> np.ndarray:
    """``(3, ...)`` template points (MNI mm) -> fractional indices into the 2 mm grid."""
    tpl = load_templates()
    shape = (3,) + (1,) * (points_mm.ndim - 1)
    origin = tpl.affine[:3, 3].reshape(shape)
    step = (np.diag(tpl.affine)[:3] * tpl.distance_step_mm).reshape(shape)
    return (points_mm - origin) / step


def ventricle_fraction_at(points_mm: np.ndarray) -> np.ndarray:
    """Lateral-ventricle fraction (trilinear on the 2 mm mask) at template points ``(3, ...)``."""
    vent = lateral_ventricles().astype(np.float32)
    return ndi.map_coordinates(vent, ventricle_index(points_mm), order=1, mode="constant",
                               cval=0.0, prefilter=False)


@functools.lru_cache(maxsize=1)
def parenchyma_edge() -> np.ndarray:
    """``|grad (gm + wm)|`` per mm ``(X, Y, Z)`` float32 on the 1 mm template grid."""
    tpl = load_templates()
    p = tpl.gm + tpl.wm
    g = np.gradient(p)
    return np.sqrt(g[0] ** 2 + g[1] ** 2 + g[2] ** 2).astype(np.float32)


@functools.lru_cache(maxsize=2)
def eroded_tissue(thinning_mm: float) -> Tuple[np.ndarray, np.ndarray]:
    """(gm, wm) ``(X, Y, Z)`` float32 with the parenchyma edge moved ``thinning_mm`` inwards."""
    tpl = load_templates()
    if thinning_mm <= 0:
        return tpl.gm, tpl.wm
    p = tpl.gm + tpl.wm
    loss = np.float32(thinning_mm) * parenchyma_edge()
    keep = np.clip(1.0 - loss / np.maximum(p, np.float32(1e-6)), 0.0, 1.0).astype(np.float32)
    return (tpl.gm * keep).astype(np.float32), (tpl.wm * keep).astype(np.float32)
