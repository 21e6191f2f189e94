"""PSNR / SSIM with an optional mask: the same numbers as a direct computation on the pixels."""

from __future__ import annotations

import math

import torch

from contextmri_core.metrics import intensity_match, psnr, ssim


def images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.zeros(64, 64, dtype=torch.complex64)
    ref[16:48, 16:48] = 1.0 + torch.rand(32, 32, generator=g)
    noise = 0.05 * torch.randn(64, 64, generator=g)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:48, 16:48] = True
    return ref, ref.abs() * 2.0 + noise, mask  # x = 2 ref + noise: the match removes the 2


def test_masked_psnr_equals_the_definition_inside_the_mask():
    ref, x, mask = images()
    a, r = x[mask].double(), ref.abs()[mask].double()
    scale = (a @ r) / (a @ a)
    expected = 10 * math.log10(float(r.max()) ** 2 / float(((scale * a - r) ** 2).mean()))
    assert abs(psnr(x, ref, mask) - expected) < 1e-6


def test_errors_outside_the_mask_do_not_count():
    ref, x, mask = images()
    spoiled = x.clone()
    spoiled[~mask] += 5.0
    assert abs(psnr(spoiled, ref, mask) - psnr(x, ref, mask)) < 1e-9
    assert psnr(spoiled, ref) < psnr(x, ref) - 10
    # SSIM windows (11x11) reach 5 pixels past the mask: spoil only what lies farther out
    far = torch.ones(64, 64, dtype=torch.bool)
    far[11:53, 11:53] = False
    spoiled_far = x.clone()
    spoiled_far[far] += 5.0
    assert abs(ssim(spoiled_far, ref, mask) - ssim(x, ref, mask)) < 1e-9
    assert ssim(spoiled_far, ref) < ssim(x, ref) - 0.1
    assert ssim(x, ref, mask) < 1.0


def test_whole_image_metrics_unchanged_without_a_mask():
    ref, x, mask = images()
    assert torch.allclose(intensity_match(x, ref), intensity_match(x, ref, None))
    assert abs(ssim(ref, ref) - 1.0) < 1e-9 and abs(ssim(ref, ref, mask) - 1.0) < 1e-9
