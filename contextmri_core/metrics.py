"""Image-quality metrics on magnitudes after a least-squares intensity match (torch)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def intensity_match(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``|x|`` scaled by the least-squares factor ``<|x|,|ref|> / <|x|,|x|>`` (over the last
    two axes, per leading index)."""
    a, r = torch.abs(x).double(), torch.abs(ref).double()
    num = torch.sum(a * r, dim=(-2, -1), keepdim=True)
    den = torch.sum(a * a, dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    return (a * num / den).to(torch.float32)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of ``|x|`` (intensity-matched) against ``|ref|``, peak = max |ref|."""
    r = torch.abs(ref).double()
    mse = torch.mean((intensity_match(x, ref).double() - r) ** 2)
    return float(10 * torch.log10(r.max() ** 2 / mse.clamp_min(1e-30)))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian, sigma 1.5, K1 .01, K2 .03) of one 2D image
    ``|x|`` (intensity-matched) against ``|ref|``, data range = max |ref|."""
    a = intensity_match(x, ref).double().reshape(1, 1, *x.shape[-2:])
    b = torch.abs(ref).double().reshape(1, 1, *ref.shape[-2:])
    w = _gaussian_window()
    c1, c2 = (0.01 * b.max()) ** 2, (0.03 * b.max()) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a ** 2
    sbb = F.conv2d(b * b, w) - mu_b ** 2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2)
    value = float(torch.mean(num / den))
    return value if math.isfinite(value) else 0.0
