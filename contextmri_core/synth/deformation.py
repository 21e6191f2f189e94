"""Random smooth diffeomorphisms of the template: stationary velocity fields (SVF).

A velocity field ``v`` (mm) lives on a coarse grid in template space (MNI RAS mm, step
``GRID_STEP_MM``). Its exponential ``phi = exp(v)`` is computed by scaling and squaring:
``u_0 = v / 2^K``, then ``K`` times ``u <- u + u o (id + u)`` (trilinear interpolation on the
grid). ``phi(q) = q + u(q)`` is a diffeomorphism when the field is smooth, and
``jacobian_determinant`` checks it numerically (``det D phi > 0`` on every grid cell).

Convention: ``phi`` *pulls back*: it maps a point of the subject (in template-aligned mm) to
the template point whose tissue is found there. A velocity that points into a structure
therefore enlarges it in the subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

#: Step (mm) of the velocity/displacement grid.
GRID_STEP_MM = 4.0
#: Template-space box (MNI RAS mm, lower and upper corner) covered by the grid: the head with
#: its shell and a margin; outside it the displacement is held at its (tapered, ~0) border.
GRID_BOX_MM = ((-112.0, -152.0, -104.0), (112.0, 120.0, 124.0))
#: Squarings of the scaling-and-squaring integration (v / 2^K is a tiny step).
SQUARINGS = 5


@dataclass(frozen=True)
class Deformation:
    """A displacement field ``u`` ``(3, X, Y, Z)`` float32 in mm on the grid
    ``origin_mm + step_mm * index``; ``phi(q) = q + u(q)`` for template-frame points ``q``."""

    displacement_mm: np.ndarray
    origin_mm: Tuple[float, float, float]
    step_mm: float

    def _index(self, points: np.ndarray) -> np.ndarray:
        shape = (3,) + (1,) * (points.ndim - 1)
        origin = np.asarray(self.origin_mm, np.float32).reshape(shape)
        return (points - origin) / np.float32(self.step_mm)

    def displacement_at(self, points: np.ndarray) -> np.ndarray:
        """``u`` at points ``(3, ...)`` mm (float32, trilinear, held constant outside)."""
        idx = self._index(np.asarray(points, np.float32))
        return np.stack([ndi.map_coordinates(c, idx, order=1, mode="nearest", prefilter=False)
                         for c in self.displacement_mm])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``phi(points)`` ``(3, ...)`` float32."""
        points = np.asarray(points, np.float32)
        return points + self.displacement_at(points)


def grid_shape(step_mm: float = GRID_STEP_MM) -> Tuple[int, int, int]:
    """Nodes per axis of the grid over ``GRID_BOX_MM``."""
    lo, hi = np.asarray(GRID_BOX_MM[0]), np.asarray(GRID_BOX_MM[1])
    return tuple(int(v) for v in np.floor((hi - lo) / step_mm).astype(int) + 1)


def grid_points(step_mm: float = GRID_STEP_MM) -> np.ndarray:
    """Template-space coordinates ``(3, X, Y, Z)`` float32 (mm) of the grid nodes."""
    axes = [np.float32(lo) + np.float32(step_mm) * np.arange(n, dtype=np.float32)
            for lo, n in zip(GRID_BOX_MM[0], grid_shape(step_mm))]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def smooth_noise(rng: np.random.Generator, shape: Tuple[int, int, int], sigma_mm: float,
                 step_mm: float = GRID_STEP_MM) -> np.ndarray:
    """Gaussian-smoothed white noise ``(3, *shape)`` float32 with unit RMS per component."""
    out = np.empty((3,) + tuple(shape), np.float32)
    for c in range(3):
        field = ndi.gaussian_filter(rng.standard_normal(shape), sigma_mm / step_mm,
                                    mode="reflect")
        out[c] = field / max(float(np.sqrt(np.mean(field ** 2))), 1e-12)
    return out


def taper(step_mm: float = GRID_STEP_MM, width_mm: float = 16.0) -> np.ndarray:
    """Window ``(X, Y, Z)`` float32: 1 inside, falling smoothly to 0 at the grid border."""
    weights = []
    for n in grid_shape(step_mm):
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) * step_mm  # mm to the border
        weights.append(np.clip(d / width_mm, 0.0, 1.0) ** 2 * (3 - 2 * np.clip(d / width_mm,
                                                                              0.0, 1.0)))
    wx, wy, wz = weights
    return (wx[:, None, None] * wy[None, :, None] * wz[None, None, :]).astype(np.float32)


def _compose(u: np.ndarray, step_mm: float) -> np.ndarray:
    """``u + u o (id + u)`` on the grid (one squaring)."""
    idx = np.indices(u.shape[1:], dtype=np.float32) + u / np.float32(step_mm)
    return u + np.stack([ndi.map_coordinates(c, idx, order=1, mode="nearest", prefilter=False)
                         for c in u])


def integrate_velocity(velocity_mm: np.ndarray, step_mm: float = GRID_STEP_MM,
                       squarings: int = SQUARINGS) -> Deformation:
    """``exp(v)`` by scaling and squaring; ``velocity_mm`` ``(3, X, Y, Z)`` on the grid."""
    u = (np.asarray(velocity_mm, np.float32) / np.float32(2 ** squarings))
    for _ in range(squarings):
        u = _compose(u, step_mm)
    origin = tuple(float(v) for v in GRID_BOX_MM[0])
    return Deformation(u.astype(np.float32), origin, float(step_mm))  # type: ignore[arg-type]


def inverse(velocity_mm: np.ndarray, step_mm: float = GRID_STEP_MM) -> Deformation:
    """``exp(-v)``: the inverse map of ``integrate_velocity(v)``."""
    return integrate_velocity(-np.asarray(velocity_mm), step_mm)


def jacobian_determinant(deformation: Deformation) -> np.ndarray:
    """``det(I + grad u)`` ``(X, Y, Z)`` on the grid (central differences)."""
    u = deformation.displacement_mm.astype(np.float64)
    grads = [np.gradient(u[c], deformation.step_mm) for c in range(3)]  # grads[c][a] = du_c/dx_a
    jac = np.empty(u.shape[1:] + (3, 3))
    for c in range(3):
        for a in range(3):
            jac[..., c, a] = grads[c][a] + (1.0 if a == c else 0.0)
    return np.linalg.det(jac)
