"""Receive-coil sensitivities of a head array: loops on rings around the head.

Each element is a loop of radius ``a`` facing the head centre, elongated along the head
(``ELONGATION``: head-array elements are taller than wide); its magnitude follows the on-axis
Biot-Savart falloff of a loop, ``(a^2 / (a^2 + r^2))^(3/2)`` with ``r`` the distance to the
loop centre (z divided by the elongation), and its phase varies smoothly (a ramp along the ring tangent,
i.e. the B1- phase of a loop seen from off-axis, plus a per-channel offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

#: Elongation of the elements along z (scanner feet-head).
ELONGATION = 1.6


@dataclass(frozen=True)
class CoilArray:
    """Loop centres ``(C, 3)`` LPS mm, tangents ``(C, 3)``, radii ``(C,)`` mm, phase offsets
    ``(C,)`` rad, relative gains ``(C,)`` and the channel names."""

    centres_mm: np.ndarray
    tangents: np.ndarray
    radii_mm: np.ndarray
    phase_rad: np.ndarray
    gains: np.ndarray
    names: Tuple[str, ...]


def _ring_counts(num_coils: int) -> Tuple[int, ...]:
    """Elements per ring: one ring up to 8 channels, two rings above (like a 16/20-ch head)."""
    if num_coils <= 8:
        return (num_coils,)
    return (num_coils - num_coils // 2, num_coils // 2)


def head_array(
    num_coils: int, rng: np.random.Generator, centre_z_mm: float = 0.0,
    radii_mm: Tuple[float, float] = (110.0, 130.0),
) -> CoilArray:
    """A ``num_coils``-element head array on an elliptical ring (semi-axes ``radii_mm``: x, y)
    around the isocentre; rings at ``centre_z_mm`` +-25 mm; centres jittered by 5 mm."""
    centres, tangents, names = [], [], []
    counts = _ring_counts(num_coils)
    for ring, count in enumerate(counts):
        z = centre_z_mm + (0.0 if len(counts) == 1 else (25.0 if ring == 0 else -25.0))
        phi = 2 * np.pi * (np.arange(count) + rng.uniform(0, 1) + 0.5 * ring) / count
        for k, p in enumerate(phi):
            centres.append([radii_mm[0] * np.cos(p), radii_mm[1] * np.sin(p), z])
            tangents.append([-np.sin(p), np.cos(p), 0.0])
            names.append(f"HeadNeck_20:1:H{ring + 1}{k + 1}")
    centres = np.asarray(centres) + rng.normal(0.0, 5.0, size=(num_coils, 3))
    return CoilArray(
        centres_mm=centres, tangents=np.asarray(tangents),
        radii_mm=rng.uniform(55.0, 75.0, size=num_coils),
        phase_rad=rng.uniform(-np.pi, np.pi, size=num_coils),
        gains=rng.uniform(0.8, 1.2, size=num_coils), names=tuple(names))


def sensitivities_at(array: CoilArray, points_mm: np.ndarray, wavelength_mm: float = 300.0,
                     with_phase: bool = True) -> np.ndarray:
    """Physical (unnormalised) sensitivities ``(C, ...)`` at LPS points ``(3, ...)`` mm:
    complex64, or their magnitudes (float32) with ``with_phase=False``."""
    pts = np.asarray(points_mm, np.float32)
    dtype = np.complex64 if with_phase else np.float32
    out = np.empty((array.centres_mm.shape[0],) + pts.shape[1:], dtype=dtype)
    shape = (3,) + (1,) * (pts.ndim - 1)
    stretch = np.array([1.0, 1.0, 1.0 / ELONGATION], np.float32).reshape(shape)
    for c in range(out.shape[0]):
        d = pts - array.centres_mm[c].astype(np.float32).reshape(shape)
        r2 = np.sum((d * stretch) ** 2, axis=0)
        a2 = np.float32(array.radii_mm[c] ** 2)
        mag = np.float32(array.gains[c]) * (a2 / (a2 + r2)) ** 1.5
        if not with_phase:
            out[c] = mag
            continue
        along = np.tensordot(array.tangents[c].astype(np.float32), d, axes=1)
        out[c] = mag * np.exp(1j * (array.phase_rad[c] + 2 * np.pi * along / wavelength_mm))
    return out


def sensitivities(
    array: CoilArray, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: float,
    wavelength_mm: float = 300.0,
) -> np.ndarray:
    """``sensitivities_at`` on the axial grid of LPS positions ``x_mm`` (E1 axis) by ``y_mm``
    (RO axis) at height ``z_mm``: ``(C, len(x_mm), len(y_mm))`` complex64."""
    gx, gy = np.meshgrid(x_mm, y_mm, indexing="ij")
    return sensitivities_at(array, np.stack([gx, gy, np.full_like(gx, z_mm)]), wavelength_mm)


def shading_at(array: CoilArray, points_mm: np.ndarray) -> np.ndarray:
    """Receive shading ``sqrt(sum_c |S_c|^2)`` ``(...)`` float32 of the physical maps."""
    mag = sensitivities_at(array, points_mm, with_phase=False)
    return np.sqrt(np.sum(mag ** 2, axis=0)).astype(np.float32)


def normalise(maps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Split physical maps ``(C, ny, nx)`` into normalised maps (``sum_c |S_c|^2 = 1``) and
    their root-sum-of-squares ``(ny, nx)`` (the receive shading)."""
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    return (maps / np.maximum(rss, 1e-12)).astype(np.complex64), rss.astype(np.float32)
