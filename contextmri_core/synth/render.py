"""Tissue fractions of one slice of a scan: the hot path of the simulation.

Each pixel is sampled ``s x s`` times in plane (``s = ceil(spacing / 1 mm)``, at most 3) and
at ``P = ceil(thickness / 1 mm)`` planes through the slice (a boxcar slice profile), then
averaged: partial volume in plane and through thick slices. Sample points go scanner LPS ->
head (placement) -> template frame (head scaling) by one affine, then through the subject's
deformation, which is smooth, so it is evaluated on a ~3 mm lattice per sub-plane and
interpolated bilinearly (two small matrix products) instead of at every sample.

The template is 1 mm: pixels finer than that get their values by trilinear interpolation of
the template and carry no anatomical detail finer than 1 mm.
"""

from __future__ import annotations

import math
import numpy as np

from contextmri_core.synth.anatomy import tissue_fractions
from contextmri_core.synth.geometry import linear_weights, pixel_centres_mm, placement_affine
from contextmri_core.synth.morphology import morphology_affine
from contextmri_core.synth.orientation import ScanGeometry

#: Resolution (mm) of the template, which sets the sampling density.
TEMPLATE_MM = 1.0
#: Step (mm) of the lattice the deformation is evaluated on.
LATTICE_MM = 3.0
MAX_SUPERSAMPLE = 3


def supersampling(pixel_spacing_mm: float) -> int:
    """In-plane samples per pixel and axis: ``ceil(spacing / TEMPLATE_MM)`` in 1..3."""
    return int(min(MAX_SUPERSAMPLE, max(1, math.ceil(pixel_spacing_mm / TEMPLATE_MM - 1e-6))))


def sub_plane_offsets_mm(thickness_mm: float) -> np.ndarray:
    """Centres (mm along the normal) of ``ceil(thickness / TEMPLATE_MM)`` equal bins."""
    count = max(1, math.ceil(thickness_mm / TEMPLATE_MM - 1e-6))
    return (thickness_mm * ((np.arange(count) + 0.5) / count - 0.5)).astype(np.float32)


def scanner_points(geom: ScanGeometry, k: int) -> np.ndarray:
    """LPS centres ``(3, n, n)`` float32 of the pixels of slice ``k`` (rows along phase)."""
    a = pixel_centres_mm(geom.matrix, geom.pixel_spacing_mm).astype(np.float32)
    pos, ph, rd = (np.asarray(v, np.float32) for v in (geom.positions_mm[k], geom.phase_dir,
                                                       geom.read_dir))
    return (pos[:, None, None] + a[None, :, None] * ph[:, None, None]
            + a[None, None, :] * rd[:, None, None])


def _lattice(x: np.ndarray) -> np.ndarray:
    count = max(2, int(math.ceil((x[-1] - x[0]) / LATTICE_MM)) + 1)
    return np.linspace(x[0], x[-1], count).astype(np.float32)


def _frame_points(affine: np.ndarray, geom: ScanGeometry, k: int, a: np.ndarray, b: np.ndarray,
                  t: np.ndarray) -> np.ndarray:
    """Template-frame points ``(3, P, len(a), len(b))`` of scanner points
    ``pos_k + t normal + a phase + b read`` under ``affine``."""
    lin = affine[:3, :3]
    q0 = (lin @ np.asarray(geom.positions_mm[k]) + affine[:3, 3]).astype(np.float32)
    nv, pv, rv = (((lin @ np.asarray(v)).astype(np.float32))[:, None, None, None]
                  for v in (geom.slice_dir, geom.phase_dir, geom.read_dir))
    return (q0[:, None, None, None] + t[None, :, None, None] * nv
            + a[None, None, :, None] * pv + b[None, None, None, :] * rv)


def template_points(subject, geom: ScanGeometry, k: int, supersample: int,
                    offsets_mm: np.ndarray) -> np.ndarray:
    """Template points ``(3, P, n*s, n*s)`` float32 of the sub-samples of slice ``k``."""
    morph = subject.morphology
    affine = morphology_affine(morph) @ placement_affine(subject.placement)
    a = pixel_centres_mm(geom.matrix, geom.pixel_spacing_mm, supersample).astype(np.float32)
    points = _frame_points(affine, geom, k, a, a, offsets_mm)
    if morph.deformation is None:
        return points
    lat = _lattice(a)
    u_lat = morph.deformation.displacement_at(_frame_points(affine, geom, k, lat, lat,
                                                            offsets_mm))
    w = linear_weights(a, lat)
    return points + (w @ u_lat) @ w.T


def slice_fractions(subject, geom: ScanGeometry, k: int) -> np.ndarray:
    """Tissue fractions ``(T, n, n)`` float32 of slice ``k`` of ``geom`` for ``subject``
    (``anatomy.TISSUES`` order); the sum over tissues is <= 1, air is the rest."""
    s = supersampling(geom.pixel_spacing_mm)
    offsets = sub_plane_offsets_mm(geom.slice_thickness_mm)
    points = template_points(subject, geom, k, s, offsets)
    frac = tissue_fractions(points, subject.lesions, subject.morphology.thinning_mm)
    n, t = geom.matrix, frac.shape[0]
    frac = frac.reshape(t, len(offsets), n, s, n, s)
    return frac.mean(axis=(1, 3, 5), dtype=np.float32)

