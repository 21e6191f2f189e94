"""Noise prewhitening from noise-only acquisitions (decorrelates coils, unit noise variance)."""

from __future__ import annotations

import torch

from contextmri_core.errors import ShapeError


def noise_covariance(noise: torch.Tensor) -> torch.Tensor:
    """Sample covariance ``(C, C)`` of noise samples ``(C, N)`` (mean removed)."""
    if noise.ndim != 2 or noise.shape[1] < 2:
        raise ShapeError(f"noise samples must be (C, N>=2); got {tuple(noise.shape)}")
    n = noise - noise.mean(dim=1, keepdim=True)
    return (n @ n.mH) / (n.shape[1] - 1)


def prewhitening_matrix(noise: torch.Tensor, bandwidth_ratio: float = 1.0) -> torch.Tensor:
    """``W = L^{-1}`` with ``L L^H = Psi`` (Cholesky of the noise covariance), so that
    ``W @ data`` has identity noise covariance.

    ``bandwidth_ratio`` (acquisition over noise-scan receiver bandwidth, e.g. the ratio of dwell
    times) rescales ``Psi`` when the noise scan was sampled differently.
    """
    psi = noise_covariance(noise.to(torch.complex128)) * float(bandwidth_ratio)
    eye = torch.eye(psi.shape[0], dtype=psi.dtype, device=psi.device)
    chol = torch.linalg.cholesky(psi + 1e-12 * torch.trace(psi).real / psi.shape[0] * eye)
    return torch.linalg.solve_triangular(chol, eye, upper=False).to(torch.complex64)


def prewhiten(data: torch.Tensor, w: torch.Tensor, coil_dim: int = -3) -> torch.Tensor:
    """Apply ``W`` ``(C, C)`` along ``coil_dim`` of ``data`` (e.g. ``(B, C, ky, kx)``)."""
    moved = torch.movedim(data, coil_dim, -1)
    return torch.movedim(moved @ w.to(data.dtype).T, -1, coil_dim)
