"""Domain-randomised intensities: random class means, a smooth texture of the asked size,
air stays zero, and whole scans carry no contrast."""

from __future__ import annotations

import numpy as np

from contextmri_core.synth.anatomy import TISSUES
from contextmri_core.synth.domain_random import (
    RandomContrast, draw_random_contrast, random_magnitude,
)

T = len(TISSUES)
WM, GM = TISSUES.index("wm"), TISSUES.index("gm")


def _pure(tissue: int, n: int = 64) -> np.ndarray:
    frac = np.zeros((T, n, n), np.float32)
    frac[tissue] = 1.0
    return frac


def test_means_are_random_so_tissue_order_is_not_fixed():
    draws = [draw_random_contrast(np.random.default_rng(s)) for s in range(40)]
    ratios = np.array([d.means[WM] / max(d.means[GM], 1e-3) for d in draws])
    assert (ratios > 1).mean() > 0.25 and (ratios < 1).mean() > 0.25  # WM brighter or darker
    assert all(0 <= m <= 1 for d in draws for m in d.means)
    assert all(0 <= t <= 0.25 for d in draws for t in d.texture)
    assert all(2.0 <= d.texture_mm <= 10.0 for d in draws)


def test_texture_amplitude_and_scale():
    rc = RandomContrast(means=(0.5,) * T, texture=(0.2,) * T, texture_mm=6.0)
    mag = random_magnitude(_pure(WM, 128), rc, np.random.default_rng(0), pixel_mm=1.0)
    rel = mag.std() / mag.mean()
    assert 0.08 < rel < 0.3 and abs(mag.mean() - 0.5) < 0.1
    # smooth: neighbours 1 mm apart are far more alike than pixels 30 mm apart
    near = np.corrcoef(mag[:, :-1].ravel(), mag[:, 1:].ravel())[0, 1]
    far = np.corrcoef(mag[:, :-30].ravel(), mag[:, 30:].ravel())[0, 1]
    assert near > 0.9 and far < 0.5
    flat = RandomContrast(means=(0.5,) * T, texture=(0.0,) * T, texture_mm=6.0)
    np.testing.assert_allclose(random_magnitude(_pure(WM), flat, np.random.default_rng(0), 1.0),
                               0.5, atol=1e-6)


def test_air_stays_zero_and_mixtures_mix():
    rc = draw_random_contrast(np.random.default_rng(3))
    air = np.zeros((T, 32, 32), np.float32)
    assert not random_magnitude(air, rc, np.random.default_rng(0), 1.0).any()
    flat = RandomContrast(means=rc.means, texture=(0.0,) * T, texture_mm=5.0)
    half = np.zeros((T, 8, 8), np.float32)
    half[WM], half[GM] = 0.5, 0.5
    np.testing.assert_allclose(random_magnitude(half, flat, np.random.default_rng(0), 1.0),
                               0.5 * (rc.means[WM] + rc.means[GM]), rtol=1e-5)
