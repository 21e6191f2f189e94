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


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares over the coil axis (real)."""
    return torch.sqrt(torch.sum(torch.abs(coil_images) ** 2, dim=dim))


def _calibration_kernels(calib: torch.Tensor, kernel_width: int, thresh: float) -> torch.Tensor:
    """Null-space complement kernels ``(K, C, kw, kw)`` of the block-Hankel calibration matrix."""
    c = calib.shape[0]
    blocks = calib.unfold(1, kernel_width, 1).unfold(2, kernel_width, 1)  # C, by, bx, kw, kw
    mat = blocks.reshape(c, -1, kernel_width * kernel_width).permute(1, 0, 2)
    mat = mat.reshape(-1, c * kernel_width * kernel_width)
    _, s, vh = torch.linalg.svd(mat, full_matrices=False)
    vh = vh[s > thresh * s.max()]
    return vh.reshape(-1, c, kernel_width, kernel_width)


def _image_gram(kernels: torch.Tensor, img_shape: Tuple[int, int], chunk: int = 16) -> torch.Tensor:
    """Per-pixel ``sum_k v_k v_k^H`` of the zero-padded, inverse-FFT'd kernels -> ``(ny, nx, C, C)``."""
    k, c, kw, _ = kernels.shape
    ny, nx = img_shape
    oy, ox = ny // 2 - kw // 2, nx // 2 - kw // 2
    gram = torch.zeros(ny, nx, c, c, dtype=kernels.dtype, device=kernels.device)
    for start in range(0, k, chunk):
        part = kernels[start:start + chunk]
        padded = torch.zeros(part.shape[0], c, ny, nx, dtype=part.dtype, device=part.device)
        padded[:, :, oy:oy + kw, ox:ox + kw] = part
        v = ifft2c(padded)  # (k, C, ny, nx)
        gram += torch.einsum("kcyx,kdyx->yxcd", v, v.conj())
    return gram * (ny * nx / kw ** 2)


def espirit_maps(
    calib: torch.Tensor,
    img_shape: Tuple[int, int],
    kernel_width: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
) -> torch.Tensor:
    """ESPIRiT maps ``(C, ny, nx)`` from a calibration block ``calib`` ``(C, n_rows, n_cols)``.

    One set of maps (the eigenvector of the largest eigenvalue per pixel), phase relative to
    coil 0, zeroed where that eigenvalue is below ``crop``.
    """
    if calib.ndim != 3:
        raise ShapeError(f"calibration block must be (C, rows, cols); got {tuple(calib.shape)}")
    if min(calib.shape[1:]) < kernel_width:
        raise ShapeError(f"calibration block {tuple(calib.shape[1:])} is smaller than the "
                         f"ESPIRiT kernel ({kernel_width}); the scan has too few ACS lines")
    calib = calib.to(torch.complex64)
    kernels = _calibration_kernels(calib, kernel_width, thresh)
    log.debug("ESPIRiT: %d kernels from a %s block", kernels.shape[0], tuple(calib.shape[1:]))
    evals, evecs = torch.linalg.eigh(_image_gram(kernels, img_shape))
    maps = evecs[..., -1].permute(2, 0, 1)  # (C, ny, nx)
    ref = maps[0]
    phase = torch.where(ref.abs() > 0, ref.conj() / ref.abs().clamp_min(1e-30), torch.ones_like(ref))
    maps = maps * phase
    return (maps * (evals[..., -1] > crop)).to(torch.complex64).contiguous()
