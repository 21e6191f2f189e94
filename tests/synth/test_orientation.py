"""Slice planes: directions, labels, oblique tilt, and the anatomy where the convention says.

Convention (``data.geometry``): pixel ``(i, j)`` of an ``(E1, RO)`` image lies at
``position + (i - n//2) dy phase_dir + (j - n//2) dx read_dir`` (LPS). The subject here is
the template itself (no placement, no deformation), so an MNI point ``(x, y, z)`` sits at
scanner LPS ``(-x, -(y + 16), z - 15)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from contextmri_core.data.geometry import slice_plane
from contextmri_core.synth.anatomy import TISSUES, Lesion
from contextmri_core.synth.orientation import (
    PLANES, STANDARD_AXES, ScanGeometry, draw_geometry, oriented_axes,
)
from contextmri_core.synth.render import slice_fractions
from contextmri_core.synth.scan import SimConfig, draw_config_subject

N, SPACING = 96, 2.5
LESION_MNI = (28.0, 15.0, 30.0)  # right frontal white matter (template WM 0.996)


def mni_to_scanner(p):
    x, y, z = p
    return np.array([-x, -(y + 16.0), z - 15.0])


def expected_pixel(geom: ScanGeometry, k: int, point_lps) -> tuple:
    d = np.asarray(point_lps) - np.asarray(geom.positions_mm[k])
    return (N // 2 + d @ np.asarray(geom.phase_dir) / SPACING,
            N // 2 + d @ np.asarray(geom.read_dir) / SPACING)


@pytest.fixture(scope="module")
def subject():
    cfg = SimConfig(augment=False, deformation_strength=0.0, atrophy_strength=0.0,
                    lesion_probability=0.0)
    subj = draw_config_subject(np.random.default_rng(0), cfg, 0)
    return dataclasses.replace(subj, lesions=(Lesion(LESION_MNI, (4.0, 4.0, 4.0), 0.0),))


def _through(plane: str, point_lps, thickness: float = 2.0) -> ScanGeometry:
    geom = draw_geometry(np.random.default_rng(1), plane, N, SPACING, thickness, 1)
    normal = np.asarray(geom.slice_dir)
    return dataclasses.replace(geom, positions_mm=(tuple(float(point_lps @ normal) * normal),))


@pytest.mark.parametrize("plane", PLANES)
def test_axes_are_right_handed_unit_vectors_with_the_right_label(plane):
    read, phase, normal, tilt = oriented_axes(plane, np.random.default_rng(0))
    assert tilt == 0
    np.testing.assert_allclose(read, STANDARD_AXES[plane][0])
    np.testing.assert_allclose(normal, np.cross(phase, read))
    assert abs(read @ phase) < 1e-12 and slice_plane(normal) == plane
    for seed in range(20):
        r, p, n, t = oriented_axes(plane, np.random.default_rng(seed), oblique_max_deg=20.0)
        assert 0 <= t <= 20 and slice_plane(n) == plane
        np.testing.assert_allclose(np.linalg.det(np.stack([r, p, n])), -1.0, atol=1e-9)
        base_normal = np.cross(STANDARD_AXES[plane][1], STANDARD_AXES[plane][0])
        assert np.degrees(np.arccos(np.clip(n @ base_normal, -1, 1))) == pytest.approx(t)
    _, _, n, t = oriented_axes(plane, np.random.default_rng(5), oblique_max_deg=45.0)
    assert slice_plane(n) == (plane if t <= 30 else "oblique")


@pytest.mark.parametrize("plane", PLANES)
def test_a_right_frontal_lesion_appears_where_the_geometry_says(subject, plane):
    lesion = mni_to_scanner(LESION_MNI)
    geom = _through(plane, lesion)
    frac = slice_fractions(subject, geom, 0)
    les = frac[TISSUES.index("lesion")]
    assert les.max() > 0.8
    rows, cols = np.nonzero(les > 0.5)
    want_i, want_j = expected_pixel(geom, 0, lesion)
    assert rows.mean() == pytest.approx(want_i, abs=1.0)
    assert cols.mean() == pytest.approx(want_j, abs=1.0)
    # patient right (+x in MNI, -x in LPS) is on the low-index side of R->L axes
    if plane in ("axial", "coronal"):
        assert rows.mean() < N // 2 - 5
    if plane == "sagittal":  # anterior (A->P phase) is the low-index side
        assert rows.mean() < N // 2 - 5


def _brain(frac):
    return frac[TISSUES.index("gm")] + frac[TISSUES.index("wm")]


def test_coronal_slices_have_the_vertex_at_low_and_the_neck_at_high_readout_index(subject):
    """At MNI y = -16 the template's brain spans z = -41..78 mm; read runs S->I."""
    frac = slice_fractions(subject, _through("coronal", mni_to_scanner((0.0, -16.0, 15.0))), 0)
    brain, muscle = _brain(frac), frac[TISSUES.index("muscle")]
    cols = np.flatnonzero(brain.max(axis=0) > 0.5)
    assert cols[0] == pytest.approx(N // 2 - (78 - 15) / SPACING, abs=2)  # vertex
    assert cols[-1] == pytest.approx(N // 2 + (15 + 41) / SPACING, abs=2)  # brain stem
    q = N // 4
    assert muscle[:, -q:].sum() > 3 * muscle[:, :q].sum()  # neck below (I)


def test_sagittal_midline_has_the_cerebellum_posterior_inferior(subject):
    frac = slice_fractions(subject, _through("sagittal", mni_to_scanner((0.0, -16.0, 15.0))), 0)
    brain = _brain(frac)
    h = N // 2
    inferior_posterior, inferior_anterior = brain[h:, h + 8:].sum(), brain[:h, h + 8:].sum()
    assert inferior_posterior > 2 * inferior_anterior  # rows A->P, columns S->I


def test_thick_slices_average_their_sub_planes(subject):
    """Boxcar profile: a 4 mm slice is the mean of four 1 mm slices at its sub-planes."""
    centre = mni_to_scanner((0.0, -16.0, 20.0))
    thick = slice_fractions(subject, _through("axial", centre, thickness=4.0), 0)
    thin = [slice_fractions(subject, _through("axial", centre + [0, 0, dz], thickness=1.0), 0)
            for dz in (-1.5, -0.5, 0.5, 1.5)]
    np.testing.assert_allclose(thick, np.mean(thin, axis=0), atol=1e-5)
