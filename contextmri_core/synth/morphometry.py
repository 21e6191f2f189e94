"""Measurements of a subject's anatomy against the template (what the tests and
``benchmarks/synth_variety.py`` use to check that subjects differ by the intended amount).

All are taken in subject space (template-aligned head mm, before the placement) by pulling
points back through ``morphology.head_to_template``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.synth import deformation as dfm
from contextmri_core.synth.morphology import Morphology, head_to_template
from contextmri_core.synth.template_maps import ventricle_fraction_at
from contextmri_core.synth.templates import load_templates

#: Box (MNI-aligned mm) that holds the lateral ventricles of any subject, and its step.
_VENTRICLE_BOX = ((-50.0, -80.0, -30.0), (50.0, 40.0, 60.0))
_STEP_MM = 2.0


def _box_points(box, step: float) -> np.ndarray:
    axes = [np.arange(lo, hi + step / 2, step, dtype=np.float32) for lo, hi in zip(*box)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def ventricle_volume_ml(morph: Morphology) -> float:
    """Lateral-ventricle volume (ml) of the subject."""
    pts = _box_points(_VENTRICLE_BOX, _STEP_MM)
    return float(ventricle_fraction_at(head_to_template(pts, morph)).sum() * _STEP_MM ** 3
                 / 1000.0)


def head_extent_mm(morph: Morphology, z_mm: float = 15.0) -> Tuple[float, float]:
    """(width L-R, length A-P) in mm of the head (inside the outer head surface) in the
    axial plane at MNI-aligned height ``z_mm``."""
    tpl = load_templates()
    xs = np.arange(-120.0, 120.0, 1.0, dtype=np.float32)
    ys = np.arange(-160.0, 120.0, 1.0, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    pts = np.stack([gx, gy, np.full_like(gx, z_mm)])
    q = head_to_template(pts, morph)
    idx = (q - tpl.affine[:3, 3].reshape(3, 1, 1)) / np.float32(tpl.distance_step_mm)
    idx[2] += tpl.envelope_pad_vox
    inside = ndi.map_coordinates(tpl.envelope_mm, idx, order=1, cval=100.0) < 0
    cols, rows = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    return float(xs[cols[-1]] - xs[cols[0]]), float(ys[rows[-1]] - ys[rows[0]])


def brain_strain_rms(morph: Morphology) -> float:
    """RMS over the brain of the singular values of ``D phi`` minus 1: how much distances
    between nearby structures (e.g. neighbouring folds) change, 0 for no deformation."""
    if morph.deformation is None:
        return 0.0
    tpl = load_templates()
    pts = dfm.grid_points(morph.deformation.step_mm)
    idx = pts - tpl.affine[:3, 3].reshape(3, 1, 1, 1).astype(np.float32)
    brain = ndi.map_coordinates(tpl.gm + tpl.wm, idx, order=1) > 0.5
    u = morph.deformation.displacement_mm.astype(np.float64)
    grads = [np.gradient(u[c], morph.deformation.step_mm) for c in range(3)]
    jac = np.stack([np.stack([grads[c][a][brain] + (a == c) for a in range(3)], -1)
                    for c in range(3)], -2)
    return float(np.sqrt(np.mean((np.linalg.svd(jac, compute_uv=False) - 1.0) ** 2)))


def cortex_displacement_rms_mm(morph: Morphology) -> float:
    """RMS (mm) over cortical grey matter of the non-rigid displacement (its mean removed)."""
    if morph.deformation is None:
        return 0.0
    tpl = load_templates()
    vox = np.argwhere(tpl.gm[::3, ::3, ::3] > 0.6) * 3
    pts = (vox + tpl.affine[:3, 3]).T.astype(np.float32)
    u = morph.deformation.displacement_at(pts)
    u = u - u.mean(axis=1, keepdims=True)
    return float(np.sqrt((u ** 2).sum(axis=0).mean()))
