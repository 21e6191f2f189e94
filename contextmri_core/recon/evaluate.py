"""Score reconstructions against a reference: PSNR/SSIM of magnitudes after a least-squares
intensity match, means over slices."""

from __future__ import annotations

from typing import Dict, Mapping

import torch

from contextmri_core.metrics import psnr, ssim


def score_slices(image: torch.Tensor, reference: torch.Tensor) -> Dict[str, float]:
    """Mean PSNR (dB) and SSIM over slices of ``image`` vs ``reference``, both ``(B, ny, nx)``."""
    if image.shape != reference.shape:
        raise ValueError(f"image {tuple(image.shape)} vs reference {tuple(reference.shape)}")
    p = [psnr(a, b) for a, b in zip(image.cpu(), reference.cpu())]
    s = [ssim(a, b) for a, b in zip(image.cpu(), reference.cpu())]
    return {"psnr": sum(p) / len(p), "ssim": sum(s) / len(s)}


def score_all(
    images: Mapping[str, torch.Tensor], reference: torch.Tensor
) -> Dict[str, Dict[str, float]]:
    """``{method: {"psnr": .., "ssim": ..}}`` for every reconstruction."""
    return {name: score_slices(img, reference) for name, img in images.items()}


def format_table(scores: Mapping[str, Mapping[str, float]]) -> str:
    """A small aligned text table: method, PSNR (dB), SSIM."""
    rows = [f"{'method':<12} {'PSNR dB':>8} {'SSIM':>6}"]
    rows += [f"{name:<12} {s['psnr']:>8.2f} {s['ssim']:>6.3f}" for name, s in scores.items()]
    return "\n".join(rows)
