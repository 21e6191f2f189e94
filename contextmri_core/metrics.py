"""Image-quality metrics on magnitudes after a least-squares intensity match (torch).

Every metric takes an optional boolean ``mask`` ``(ny, nx)`` (e.g. the head): the intensity
match, the error and the peak are then taken inside it (SSIM: the SSIM map averaged inside)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


def intensity_match(x: torch.Tensor, ref: torch.Tensor,
                    mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``|x|`` scaled by the least-squares factor ``<|x|,|ref|> / <|x|,|x|>`` (over the last
    two axes, per leading index; inside ``mask`` when given)."""
    a, r = torch.abs(x).double(), torch.abs(ref).double()
    w = torch.ones_like(a) if mask is None else mask.to(a.device, torch.float64).expand_as(a)
    num = torch.sum(w * a * r, dim=(-2, -1), keepdim=True)
    den = torch.sum(w * a * a, dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    return (a * num / den).to(torch.float32)


def psnr(x: torch.Tensor, ref: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """PSNR in dB of ``|x|`` (intensity-matched) against ``|ref|``, peak = max |ref| (all
    inside ``mask`` when given)."""
    r = torch.abs(ref).double()
    err = (intensity_match(x, ref, mask).double() - r) ** 2
    if mask is not None:
        inside = mask.to(r.device, torch.bool).expand_as(r)
        err, r = err[inside], r[inside]
    mse = torch.mean(err)
    return float(10 * torch.log10(r.max() ** 2 / mse.clamp_min(1e-30)))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, ref: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian, sigma 1.5, K1 .01, K2 .03) of one 2D image
    ``|x|`` (intensity-matched) against ``|ref|``, data range = max |ref|; with ``mask`` the
    match and the data range are taken inside it and the SSIM map is averaged over the mask
    pixels (of the valid, unpadded window centres)."""
    a = intensity_match(x, ref, mask).double().reshape(1, 1, *x.shape[-2:])
    b = torch.abs(ref).double().reshape(1, 1, *ref.shape[-2:])
    w = _gaussian_window()
    peak = b.max() if mask is None else b[0, 0][mask.to(b.device, torch.bool)].max()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a ** 2
    sbb = F.conv2d(b * b, w) - mu_b ** 2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2)
    smap = num / den
    if mask is None:
        value = float(torch.mean(smap))
    else:
        half = w.shape[-1] // 2
        inside = mask.to(b.device, torch.bool)[half:-half, half:-half]
        value = float(smap[0, 0][inside].mean()) if inside.any() else math.nan
    return value if math.isfinite(value) else 0.0
