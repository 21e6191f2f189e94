"""Smooth fields and receiver noise: background phase, bias field, correlated coil noise.

- Background phase: a random smooth field (low-order polynomial + low-pass random field) in
  radians, as B0 inhomogeneity and RF phase leave in a spin-echo image.
- Bias field: ``exp(smooth)`` multiplicative transmit/receive inhomogeneity (~+-15 %).
- Receiver noise: complex Gaussian with a random Hermitian positive-definite covariance
  ``Psi`` (coil-to-coil correlation ~0.1-0.5 and unequal channel noise), so prewhitening matters.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import ndimage as ndi


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
        noise = ndi.gaussian_filter(rng.normal(size=shape), smoothness_px, mode="wrap")
        field += amplitude * noise / max(float(np.std(noise)), 1e-9)
    return field.astype(np.float32)


def background_phase(shape: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth phase ``(ny, nx)`` in radians (RMS ~0.6 rad plus a constant offset)."""
    smooth = smooth_field(shape, rng, 0.4, order=2, smoothness_px=max(shape) / 6.0)
    return (smooth + rng.uniform(-np.pi, np.pi)).astype(np.float32)


def bias_field(shape: Tuple[int, int], rng: np.random.Generator, strength: float = 0.12
               ) -> np.ndarray:
    """Multiplicative bias ``exp(smooth)`` ``(ny, nx)`` float32, mean ~1, RMS log ``strength``."""
    return np.exp(smooth_field(shape, rng, strength, order=2)).astype(np.float32)


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
