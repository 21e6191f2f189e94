"""training.augment: exact k-space resampling, physical flips only, phase and shading that
keep the normalisation, crops and pads to the patch."""

import dataclasses

import pytest
import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ConfigError
from contextmri_core.physics.fft import fft2c, ifft2c
from contextmri_core.physics.mvue import center_crop, normalise
from tests.phantom import phantom
from training.augment import (AugmentConfig, fit_to_patch, flip_axis, make_sample,
                              renormalise, resample_spacing, resize_kspace)

AXIAL = ScanMetadata(anatomy="brain", contrast="T2", slice_plane="axial", pixel_spacing_mm=1.0)


def band_limited(n=64, band=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.zeros(n, n, dtype=torch.complex64)
    lo = n // 2 - band // 2
    k[lo:lo + band, lo:lo + band] = torch.randn(band, band, dtype=torch.complex64, generator=g)
    return ifft2c(k)


def test_kspace_resampling_is_exact_for_band_limited_images_and_keeps_amplitude():
    x = band_limited()
    small = resize_kspace(x, (32, 32))
    back = resize_kspace(small, (64, 64))
    assert torch.allclose(back, x, atol=1e-5 * x.abs().max())
    const = torch.full((40, 30), 0.7 + 0.2j, dtype=torch.complex64)
    for shape in ((20, 15), (80, 45), (41, 29)):
        assert torch.allclose(resize_kspace(const, shape), torch.full(shape, 0.7 + 0.2j), atol=1e-5)
    # the coarse grid holds the low frequencies of the fine one, nothing else
    assert torch.allclose(fft2c(small), center_crop(fft2c(x), (32, 32)) * 0.5, atol=1e-5)


def test_resampled_sample_carries_the_achieved_spacing_and_stays_normalised():
    x, _ = normalise(phantom(96, 80, 1)[0][None])
    cfg = AugmentConfig(resample_spacing_mm=(2.0, 2.0))
    out, meta = make_sample(x[0], AXIAL, (64, 64), cfg, torch.Generator().manual_seed(0))
    assert out.shape == (64, 64) and meta.pixel_spacing_mm == pytest.approx(2.0)
    y, achieved = resample_spacing(x[0], 1.0, 1.5)
    assert y.shape == (64, 53) and achieved == pytest.approx((96 / 64 + 80 / 53) / 2)
    big, _ = make_sample(x[0], AXIAL, (200, 200), cfg, torch.Generator().manual_seed(0))
    assert torch.quantile(big[big.abs() > 0].abs(), 0.99) < 1.3  # renormalised (zero pad aside)
    unknown = dataclasses.replace(AXIAL, pixel_spacing_mm=None)
    same, meta = make_sample(x[0], unknown, (96, 80), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(same, x[0]) and meta.pixel_spacing_mm is None


def test_left_right_flips_only_where_the_anatomy_allows():
    cfg = AugmentConfig(flip_lr=True)
    assert flip_axis(AXIAL, cfg) == -2
    assert flip_axis(dataclasses.replace(AXIAL, slice_plane="coronal"), cfg) == -2
    for meta in (dataclasses.replace(AXIAL, slice_plane="sagittal"),
                 dataclasses.replace(AXIAL, slice_plane="oblique"),
                 dataclasses.replace(AXIAL, slice_plane=None),
                 dataclasses.replace(AXIAL, anatomy="abdomen")):
        assert flip_axis(meta, cfg) is None
    x = phantom(48, 40, 1)[0]
    seen = set()
    for seed in range(24):
        g = torch.Generator().manual_seed(seed)
        out, _ = make_sample(x, AXIAL, (48, 40), cfg, g)
        seen.add("same" if torch.equal(out, x) else
                 "rows" if torch.equal(out, torch.flip(x, (-2,))) else "other")
        sag, _ = make_sample(x, dataclasses.replace(AXIAL, slice_plane="sagittal"), (48, 40), cfg,
                             torch.Generator().manual_seed(seed))
        assert torch.equal(sag, x)
    assert seen == {"same", "rows"}


def test_random_phase_and_shading_keep_the_data_physical():
    x, _ = normalise(phantom(64, 64, 1)[0][None])
    x = x[0]
    g = torch.Generator().manual_seed(3)
    out, _ = make_sample(x, AXIAL, (64, 64), AugmentConfig(random_phase=True), g)
    assert torch.allclose(out.abs(), x.abs(), atol=1e-6)
    ratio = out[x.abs() > 0.1] / x[x.abs() > 0.1]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)  # one global phase
    cfg = AugmentConfig(intensity_scale=(0.7, 1.4))
    for seed in range(5):
        out, _ = make_sample(x, AXIAL, (64, 64), cfg, torch.Generator().manual_seed(seed))
        field = (out / x)[x.abs() > 0.1]
        assert field.imag.abs().max() < 1e-5 and field.real.min() > 0  # real positive field
        assert field.real.max() / field.real.min() <= 2.0 + 1e-4
        assert float(torch.quantile(out.abs().flatten(), 0.99)) == pytest.approx(1.0, abs=0.01)


def test_crops_and_pads_to_the_patch():
    x = torch.arange(30 * 20, dtype=torch.float32).reshape(30, 20).to(torch.complex64)
    assert torch.equal(fit_to_patch(x, (16, 16)), center_crop(x, (16, 16)))
    assert torch.equal(fit_to_patch(x, (16, 16), (0.0, 0.0)), x[:16, :16])
    assert torch.equal(fit_to_patch(x, (16, 16), (0.9999, 0.9999)), x[-16:, -16:])
    padded = fit_to_patch(x, (40, 16))
    assert padded.shape == (40, 16) and torch.equal(padded[5:35], center_crop(x, (30, 16)))
    assert padded[:5].abs().sum() == 0 and padded[35:].abs().sum() == 0
    out, meta = make_sample(x, AXIAL, (30, 20), AugmentConfig(), torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and meta == AXIAL  # everything off: the stored slice


def test_renormalise_and_config_checks():
    x = phantom(32, 32, 1)[0] * 7.0
    assert float(torch.quantile(renormalise(x).abs(), 0.99)) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ConfigError, match="resample_spacing_mm"):
        AugmentConfig(resample_spacing_mm=(2.0, 1.0))
    with pytest.raises(ConfigError, match="unknown keys"):
        AugmentConfig.from_dict({"flip": True})
