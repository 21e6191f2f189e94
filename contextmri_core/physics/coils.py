"""Coil sensitivities: ESPIRiT on a rectangular calibration block, and root-sum-of-squares.

The ESPIRiT here is sigpy's ``EspiritCalib`` algorithm (same calibration matrix, SVD threshold,
kernel scaling, phase reference and eigenvalue crop), generalised to a *rectangular* ACS block
(e.g. 13 ACS rows x the full readout) and written in torch so it runs on the GPU. For a
square block it matches ``sigpy.mri.app.EspiritCalib`` (tested), and BART's ``ecalib``
(tested on synthetic scans).
"""

from __future__ import annotations

import logging
from typing import Tuple

import torch

from contextmri_core.errors import ShapeError
from contextmri_core.physics.fft import ifft2c

log = logging.getLogger(__name__)


#: Fewest ACS lines ESPIRiT accepts. uniform1d x8 at a 128 matrix has int(0.04 * 128) = 5:
#: maps from 5 lines are so poor that SENSE falls below zero-filled (18.7 vs 19.5 dB on a
#: simulated T2 slice; 24.0 with the true maps), so such scans get a clear error instead.
MIN_CALIBRATION_LINES = 8


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares over the coil axis (real)."""
    return torch.sqrt(torch.sum(torch.abs(coil_images) ** 2, dim=dim))


def kernel_shape(calib_shape: Tuple[int, int], kernel_width: int) -> Tuple[int, int]:
    """ESPIRiT kernel ``(ky, kx)``: ``kernel_width`` unless the ACS block is too narrow for it.

    With few ACS rows a 6-wide kernel leaves too few block rows and the eigenvalues inside
    the object drop below the crop (holes in the maps): 10 ACS rows need a 4-wide kernel.
    """
    return tuple(min(kernel_width, max(3, n // 2 - 1)) for n in calib_shape)  # type: ignore


def _calibration_kernels(calib: torch.Tensor, kernel: Tuple[int, int], thresh: float) -> torch.Tensor:
    """Null-space complement kernels ``(K, C, ky, kx)`` of the block-Hankel calibration matrix."""
    c = calib.shape[0]
    ky, kx = kernel
    blocks = calib.unfold(1, ky, 1).unfold(2, kx, 1)  # C, by, bx, ky, kx
    mat = blocks.reshape(c, -1, ky * kx).permute(1, 0, 2).reshape(-1, c * ky * kx)
    _, s, vh = torch.linalg.svd(mat, full_matrices=False)
    vh = vh[s > thresh * s.max()]
    return vh.reshape(-1, c, ky, kx)


def _image_gram(kernels: torch.Tensor, img_shape: Tuple[int, int]) -> torch.Tensor:
    """Per-pixel ``sum_k v_k v_k^H`` of the zero-padded, inverse-FFT'd kernels -> ``(ny, nx, C, C)``.

    Computed without transforming every kernel to the image grid: entry ``(c, d)`` is the
    Fourier transform of the kernels' cross-correlation ``A_cd[s] = sum_k sum_p k_c[p]
    conj(k_d[p - s])``, whose support is only ``(2 ky - 1) x (2 kx - 1)``. So ``C^2`` image-size
    FFTs replace ``K C`` (K kernels, usually 3-4 x C), and the per-pixel outer products
    disappear; equal to the direct definition to float precision (tested).
    """
    _, c, ky, kx = kernels.shape
    ny, nx = img_shape
    sy, sx = 2 * ky - 1, 2 * kx - 1
    if ny < sy or nx < sx:
        raise ShapeError(f"image {img_shape} is smaller than the ESPIRiT kernel support {(sy, sx)}")
    spectra = torch.fft.fft2(kernels, s=(sy, sx))
    cross = torch.einsum("kcyx,kdyx->cdyx", spectra, spectra.conj())
    acorr = torch.fft.fftshift(torch.fft.ifft2(cross), dim=(-2, -1))  # s = 0 at (ky-1, kx-1)
    placed = torch.zeros(c, c, ny, nx, dtype=kernels.dtype, device=kernels.device)
    oy, ox = ny // 2 - (ky - 1), nx // 2 - (kx - 1)
    placed[:, :, oy:oy + sy, ox:ox + sx] = acorr
    gram = ifft2c(placed).permute(2, 3, 0, 1)  # (ny, nx, C, C)
    return gram * ((ny * nx) ** 0.5 / (ky * kx))


def espirit_maps(
    calib: torch.Tensor,
    img_shape: Tuple[int, int],
    kernel_width: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
) -> torch.Tensor:
    """ESPIRiT maps ``(C, ny, nx)`` from a calibration block ``calib`` ``(C, n_rows, n_cols)``.

    ``kernel_width`` is reduced along an axis where the block is narrow (:func:`kernel_shape`).
    One set of maps (the eigenvector of the largest eigenvalue per pixel), phase relative to
    coil 0, zeroed where that eigenvalue is below ``crop``.
    """
    if calib.ndim != 3:
        raise ShapeError(f"calibration block must be (C, rows, cols); got {tuple(calib.shape)}")
    if min(calib.shape[1:]) < MIN_CALIBRATION_LINES:
        raise ShapeError(f"calibration block {tuple(calib.shape[1:])} is too small for ESPIRiT "
                         f"(needs >= {MIN_CALIBRATION_LINES} fully sampled lines); the scan has "
                         "too few ACS lines")
    calib = calib.to(torch.complex64)
    kernel = kernel_shape(tuple(calib.shape[1:]), kernel_width)
    kernels = _calibration_kernels(calib, kernel, thresh)
    log.debug("ESPIRiT: %d kernels %s from a %s block", kernels.shape[0], kernel,
              tuple(calib.shape[1:]))
    evals, evecs = torch.linalg.eigh(_image_gram(kernels, img_shape))
    maps = evecs[..., -1].permute(2, 0, 1)  # (C, ny, nx)
    ref = maps[0]
    phase = torch.where(ref.abs() > 0, ref.conj() / ref.abs().clamp_min(1e-30), torch.ones_like(ref))
    maps = maps * phase
    return (maps * (evals[..., -1] > crop)).to(torch.complex64).contiguous()
