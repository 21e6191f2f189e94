"""MVUE coil combination, centre crop, and the 99th-percentile normalisation of the prior."""

from __future__ import annotations

from typing import Tuple

import torch

from contextmri_core.physics.fft import ifft2c

NORM_PERCENTILE = 0.99


def mvue(kspace: torch.Tensor, maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``sum_c conj(S_c) ifft2c(k_c) / sum_c |S_c|^2``: ``(B, C, ky, kx)`` -> ``(B, ny, nx)``;
    zero where the maps are zero (outside the ESPIRiT support)."""
    if maps.ndim == 3:
        maps = maps.unsqueeze(0)
    num = torch.sum(maps.conj() * ifft2c(kspace), dim=-3)
    den = torch.sum(torch.abs(maps) ** 2, dim=-3)
    return torch.where(den > eps, num / den.clamp_min(eps), torch.zeros_like(num))


def center_crop(x: torch.Tensor, shape: Tuple[int, int]) -> torch.Tensor:
    """Crop the last two axes to ``shape`` around the centre (``n//2`` stays the centre)."""
    ny, nx = x.shape[-2:]
    cy, cx = int(shape[0]), int(shape[1])
    if cy > ny or cx > nx:
        raise ValueError(f"cannot crop {(ny, nx)} to {(cy, cx)}")
    y0, x0 = ny // 2 - cy // 2, nx // 2 - cx // 2
    return x[..., y0:y0 + cy, x0:x0 + cx]


def percentile_scale(x: torch.Tensor, q: float = NORM_PERCENTILE) -> torch.Tensor:
    """The ``q``-quantile of ``|x|`` per batch element ``(B,)``; 1 where the image is empty."""
    mags = torch.abs(x).reshape(x.shape[0], -1).to(torch.float32)
    scale = torch.quantile(mags, q, dim=1)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def normalise(x: torch.Tensor, q: float = NORM_PERCENTILE) -> Tuple[torch.Tensor, torch.Tensor]:
    """Divide each image ``(B, ny, nx)`` by its ``q``-quantile of ``|x|``; returns ``(x/s, s)``
    so that ``x = x_n * s[:, None, None]`` undoes it."""
    scale = percentile_scale(x, q)
    return x / scale.reshape(-1, 1, 1).to(x.dtype), scale
