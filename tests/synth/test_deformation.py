"""Stationary-velocity-field deformations: analytic exponentials, inverse, positive Jacobian."""

from __future__ import annotations

import numpy as np
import pytest

from contextmri_core.synth import deformation as dfm

HEAD_CENTRE = np.array([0.0, -16.0, 15.0])


def _inner(points: np.ndarray, margin_mm: float = 40.0) -> np.ndarray:
    """Grid nodes ``margin_mm`` away from the grid border (where nearest-extrapolation of the
    composition is not exact)."""
    lo, hi = np.asarray(dfm.GRID_BOX_MM[0]), np.asarray(dfm.GRID_BOX_MM[1])
    ok = np.ones(points.shape[1:], bool)
    for a in range(3):
        ok &= (points[a] > lo[a] + margin_mm) & (points[a] < hi[a] - margin_mm)
    return ok


def test_constant_velocity_integrates_to_that_translation():
    shape = dfm.grid_shape()
    v = np.zeros((3,) + shape, np.float32)
    v[0], v[1], v[2] = 3.0, -2.0, 1.5
    u = dfm.integrate_velocity(v).displacement_mm
    np.testing.assert_allclose(u[:, 5, 5, 5], [3.0, -2.0, 1.5], atol=1e-5)
    np.testing.assert_allclose(u.reshape(3, -1).std(axis=1), 0.0, atol=1e-5)


def test_linear_velocity_gives_exp_scaling_and_its_jacobian():
    """v(x) = a (x - c): exp(v) scales by e^a about c, det = e^(3a)."""
    a = 0.1
    pts = dfm.grid_points()
    v = (a * (pts - HEAD_CENTRE.reshape(3, 1, 1, 1))).astype(np.float32)
    deformation = dfm.integrate_velocity(v)
    inner = _inner(pts)
    want = (np.exp(a) - 1.0) * (pts - HEAD_CENTRE.reshape(3, 1, 1, 1))
    err = np.abs(deformation.displacement_mm - want)[:, inner]
    assert err.max() < 0.02 * np.abs(want[:, inner]).max()
    det = dfm.jacobian_determinant(deformation)[inner]
    np.testing.assert_allclose(det, np.exp(3 * a), rtol=0.02)


def test_exp_of_minus_v_inverts_exp_of_v_and_jacobians_are_positive():
    rng = np.random.default_rng(0)
    v = 4.0 * dfm.smooth_noise(rng, dfm.grid_shape(), 20.0) * dfm.taper()
    fwd, back = dfm.integrate_velocity(v), dfm.inverse(v)
    pts = dfm.grid_points()[:, ::3, ::3, ::3]
    pts = pts[:, _inner(pts)]
    roundtrip = back.apply(fwd.apply(pts))
    assert np.abs(roundtrip - pts).max() < 0.3  # mm, on displacements of several mm
    assert np.abs(fwd.apply(pts) - pts).max() > 4.0
    assert dfm.jacobian_determinant(fwd).min() > 0
    assert dfm.jacobian_determinant(back).min() > 0


def test_taper_is_one_inside_and_zero_at_the_border():
    w = dfm.taper()
    assert w[0].max() == 0 and w[:, 0].max() == 0 and w[..., -1].max() == 0
    assert w[w.shape[0] // 2, w.shape[1] // 2, w.shape[2] // 2] == pytest.approx(1.0)
