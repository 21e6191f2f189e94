"""Smooth fields and receiver noise: background phase, bias field, correlated coil noise.

- Background phase: a random smooth field (low-order polynomial + low-pass random field) in
  radians, as B0 inhomogeneity and RF phase leave in a spin-echo image.
- Bias field: ``exp(smooth)`` multiplicative transmit/receive inhomogeneity (~+-12 %), a
  polynomial in 3D scanner coordinates (one per scan, seen alike by every plane).
- Receiver noise: complex Gaussian with a random Hermitian positive-definite covariance
  ``Psi`` (coil-to-coil correlation ~0.1-0.5 and unequal channel noise), so prewhitening matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage as ndi

from contextmri_core.synth.geometry import linear_weights


def _unit_grid(shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1] over a ``(ny, nx)`` grid."""
    u = np.linspace(-1.0, 1.0, shape[0])[:, None] * np.ones((1, shape[1]))
    v = np.ones((shape[0], 1)) * np.linspace(-1.0, 1.0, shape[1])[None, :]
    return u, v


def smooth_field(
    shape: Tuple[int, int], rng: np.random.Generator, amplitude: float, order: int = 2,
    smoothness_px: float = 0.0,
) -> np.ndarray:
    """Random smooth real field ``(ny, nx)`` float32: polynomial of ``order`` with N(0, 1)
    coefficients (scaled to ``amplitude`` RMS) plus, with ``smoothness_px`` > 0, a Gaussian-
    filtered random field of the same RMS."""
    u, v = _unit_grid(shape)
    field = np.zeros(shape)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            if i + j:
                field += rng.normal() * u ** i * v ** j
    field *= amplitude / max(float(np.sqrt(np.mean(field ** 2))), 1e-9)
    if smoothness_px > 0:
        noise = _smooth_noise(shape, rng, smoothness_px)
        field += amplitude * noise / max(float(np.std(noise)), 1e-9)
    return field.astype(np.float32)


def _smooth_noise(shape: Tuple[int, int], rng: np.random.Generator, smoothness_px: float,
                  cells: int = 32) -> np.ndarray:
    """White noise Gaussian-filtered by ``smoothness_px``, computed on a ``cells``-square grid
    (filter scaled to it) and interpolated bilinearly to ``shape``: the same statistics as
    filtering at full size for smoothness well above a pixel, at a fraction of the cost."""
    noise = ndi.gaussian_filter(rng.normal(size=(cells, cells)),
                                [smoothness_px * cells / n for n in shape], mode="wrap")
    lattice = np.arange(cells, dtype=np.float64)
    wy, wx = (linear_weights((np.arange(n) + 0.5) * cells / n - 0.5, lattice) for n in shape)
    return wy @ noise.astype(np.float32) @ wx.T


def background_phase(shape: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth phase ``(ny, nx)`` in radians (RMS ~0.6 rad plus a constant offset)."""
    smooth = smooth_field(shape, rng, 0.4, order=2, smoothness_px=max(shape) / 6.0)
    return (smooth + rng.uniform(-np.pi, np.pi)).astype(np.float32)


#: Monomials (powers of x, y, z) of the bias polynomial: every term of order 1 and 2.
_BIAS_TERMS = tuple((i, j, k) for i in range(3) for j in range(3) for k in range(3)
                    if 0 < i + j + k <= 2)
#: Length (mm) that scales scanner coordinates for the bias polynomial.
_BIAS_LENGTH_MM = 100.0


@dataclass(frozen=True)
class BiasField:
    """Multiplicative bias ``exp(sum_t c_t x^i y^j z^k)`` over scanner LPS points in units of
    ``_BIAS_LENGTH_MM``: one smooth 3D field per scan, so every slice and plane sees it alike."""

    coefficients: Tuple[float, ...]

    def at(self, points_mm: np.ndarray) -> np.ndarray:
        """Bias ``(...)`` float32 at points ``(3, ...)`` mm."""
        x, y, z = (np.asarray(p, np.float32) / np.float32(_BIAS_LENGTH_MM) for p in points_mm)
        log = np.zeros(x.shape, np.float32)
        for c, (i, j, k) in zip(self.coefficients, _BIAS_TERMS):
            log += np.float32(c) * x ** i * y ** j * z ** k
        return np.exp(log).astype(np.float32)


def draw_bias_field(rng: np.random.Generator, strength: float = 0.12) -> BiasField:
    """Random ``BiasField`` with RMS log-bias ``strength`` over a 180 mm head-sized cube."""
    coef = rng.normal(size=len(_BIAS_TERMS))
    axis = np.linspace(-90.0, 90.0, 7)
    cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"))
    rms = float(np.sqrt(np.mean(np.log(BiasField(tuple(coef)).at(cube)) ** 2)))
    return BiasField(tuple(float(c) for c in coef * strength / max(rms, 1e-9)))


def noise_covariance(
    num_coils: int, rng: np.random.Generator, correlation: float = 0.35
) -> np.ndarray:
    """Random Hermitian positive-definite covariance ``(C, C)`` complex128 with unit mean
    diagonal, channel variances spread over ~[0.6, 1.4] and off-diagonal correlation of order
    ``correlation`` (``B = I + correlation * G``, ``Psi = D^1/2 corr(B B^H) D^1/2``)."""
    g = (rng.normal(size=(num_coils, num_coils))
         + 1j * rng.normal(size=(num_coils, num_coils))) / np.sqrt(2 * num_coils)
    b = np.eye(num_coils) + correlation * np.sqrt(num_coils) * g / 2.0
    cov = b @ b.conj().T
    d = np.sqrt(np.real(np.diag(cov)))
    corr = cov / np.outer(d, d)
    scale = np.sqrt(rng.uniform(0.6, 1.4, size=num_coils))
    psi = corr * np.outer(scale, scale)
    psi = 0.5 * (psi + psi.conj().T)
    return psi / np.mean(np.real(np.diag(psi)))


def correlated_noise(
    covariance: np.ndarray, shape: Tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Complex Gaussian noise ``(C, *shape)`` complex64 with ``E[n n^H] = covariance``."""
    num_coils = covariance.shape[0]
    chol = np.linalg.cholesky(covariance)
    n = int(np.prod(shape)) if shape else 1
    white = (rng.standard_normal((num_coils, n), dtype=np.float32)
             + 1j * rng.standard_normal((num_coils, n), dtype=np.float32)) / np.sqrt(2.0)
    return (chol.astype(np.complex64) @ white.astype(np.complex64)).reshape(
        (num_coils,) + tuple(shape))


def correlation_matrix(covariance: np.ndarray) -> np.ndarray:
    """Correlation coefficients ``|Psi_ij| / sqrt(Psi_ii Psi_jj)`` ``(C, C)``."""
    d = np.sqrt(np.real(np.diag(covariance)))
    return np.abs(covariance) / np.outer(d, d)
