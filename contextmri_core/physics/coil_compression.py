"""SVD coil compression ("software channel compression", Buehrer et al. 2007; Huang et al.
2008): project the coils onto the leading left singular vectors of the calibration data.

A ``(V, C)`` matrix with orthonormal rows maps C physical coils to V virtual coils. Applied
to prewhitened data the noise stays white; applied alike to k-space and to coil maps the
forward model is unchanged inside the kept subspace. Data consistency (CG on A^H A) then costs
V/C of the uncompressed one.
"""

from __future__ import annotations

from typing import Optional

import torch

from contextmri_core.errors import ConfigError, ShapeError


def _coil_matrix(calib: torch.Tensor) -> torch.Tensor:
    """Calibration data ``(C, ...)`` -> ``(C, N)`` complex128 (checks the shape)."""
    if calib.ndim < 2 or calib.shape[0] < 1 or calib[0].numel() == 0:
        raise ShapeError(f"calibration data must be (C, ...) with samples per coil; "
                         f"got {tuple(calib.shape)}")
    return calib.reshape(calib.shape[0], -1).to(torch.complex128)


def _num_for_energy(energies: torch.Tensor, energy: float) -> int:
    """Smallest V whose leading ``energies`` hold at least the fraction ``energy`` of the sum."""
    total = energies.sum()
    if total <= 0:
        return 1
    frac = torch.cumsum(energies, 0) / total
    reached = torch.nonzero(frac >= energy * (1 - 1e-12)).flatten()
    return int(reached[0]) + 1 if reached.numel() else int(energies.numel())


def compression_matrix(calib: torch.Tensor, num_virtual: Optional[int] = None,
                       energy: float = 0.99) -> torch.Tensor:
    """Compression matrix ``(V, C)`` from calibration data ``calib`` ``(C, ...)``.

    Rows are the conjugate transposes of the V leading left singular vectors of ``calib``
    reshaped to ``(C, N)``: orthonormal rows, virtual coils ordered by energy. ``num_virtual``
    wins over ``energy`` (the smallest V keeping that fraction of ``||calib||^2``); V is never
    more than C. Returned in ``calib``'s complex dtype (complex64 for real input), on its device.
    """
    if num_virtual is not None and int(num_virtual) < 1:
        raise ConfigError(f"num_virtual={num_virtual!r} is invalid: use >= 1 (or None)")
    if not 0 < energy <= 1:
        raise ConfigError(f"energy={energy!r} is invalid: use a fraction in (0, 1]")
    mat = _coil_matrix(calib)
    evals, evecs = torch.linalg.eigh(mat @ mat.mH)  # ascending; evecs = left singular vectors
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    v = int(num_virtual) if num_virtual is not None else _num_for_energy(evals, energy)
    v = min(v, mat.shape[0])
    dtype = calib.dtype if calib.is_complex() else torch.complex64
    return evecs[:, :v].mH.contiguous().to(dtype)


def compress(x: torch.Tensor, matrix: torch.Tensor, coil_dim: int = -3) -> torch.Tensor:
    """Apply ``matrix`` ``(V, C)`` along ``coil_dim`` of ``x`` (k-space ``(B, C, ky, kx)``,
    maps ``(C, ny, nx)``, ...): the coil axis becomes V long, the other axes are unchanged."""
    if matrix.ndim != 2:
        raise ShapeError(f"compression matrix must be (V, C); got {tuple(matrix.shape)}")
    if x.ndim == 0 or not -x.ndim <= coil_dim < x.ndim:
        raise ShapeError(f"coil_dim={coil_dim} is not an axis of data {tuple(x.shape)}")
    if x.shape[coil_dim] != matrix.shape[1]:
        raise ShapeError(f"data {tuple(x.shape)} has {x.shape[coil_dim]} coils on axis "
                         f"{coil_dim} but the matrix {tuple(matrix.shape)} expects "
                         f"{matrix.shape[1]}")
    dtype = x.dtype if x.is_complex() else matrix.dtype  # keeps complex64 data complex64
    moved = torch.movedim(x.to(dtype), coil_dim, -1)
    return torch.movedim(moved @ matrix.to(device=x.device, dtype=dtype).T, -1, coil_dim)


def kept_energy(calib: torch.Tensor, matrix: torch.Tensor) -> float:
    """Fraction of ``||calib||^2`` (``calib`` ``(C, ...)``) that ``matrix`` ``(V, C)`` keeps."""
    mat = _coil_matrix(calib)
    total = float(mat.abs().pow(2).sum())
    if total == 0:
        return 1.0
    kept = compress(mat, matrix.to(torch.complex128), coil_dim=0)
    return float(kept.abs().pow(2).sum()) / total
