"""ESPIRiT (vs sigpy, rectangular ACS), calibration-region detection, prewhitening, MVUE."""

import numpy as np
import pytest
import sigpy.mri
import torch

from contextmri_core.physics.calibration import calibration_box, calibration_data
from contextmri_core.physics.coils import espirit_maps, rss
from contextmri_core.physics.fft import ifft2c
from contextmri_core.physics.masks import poisson2d, to_2d, uniform1d
from contextmri_core.physics.mvue import center_crop, mvue, normalise
from contextmri_core.physics.noise import noise_covariance, prewhiten, prewhitening_matrix
from tests.phantom import phantom


def _inner(a, b):
    """|normalised inner product| per pixel of two map sets (C, ny, nx)."""
    num = torch.abs(torch.sum(a.conj() * b, 0))
    den = torch.linalg.vector_norm(a, dim=0) * torch.linalg.vector_norm(b, dim=0)
    return num / den.clamp_min(1e-12)


def test_espirit_matches_sigpy_on_square_calibration():
    img, maps, ksp = phantom(96, 96, 6, seed=0)
    ref = sigpy.mri.app.EspiritCalib(ksp.numpy(), calib_width=24, show_pbar=False).run()
    c = 48 - 12
    ours = espirit_maps(ksp[:, c:c + 24, c:c + 24], (96, 96))
    assert np.abs(ours.numpy() - ref).max() < 1e-4


def test_espirit_rectangular_acs_recovers_true_maps_where_square_does_not():
    img, maps, ksp = phantom(128, 128, 8, seed=1)
    mask = to_2d(uniform1d(128, 8, seed=0), 128)  # x8: 5 ACS lines (0.04)
    mask[64 - 6:64 + 6] = 1                        # 12-line ACS block
    block = calibration_data(ksp.numpy(), mask)
    assert block.shape == (8, 12, 128)
    est = espirit_maps(torch.from_numpy(block), (128, 128))
    inside = torch.abs(img) > 0.05
    assert float(torch.median(_inner(est, maps)[inside])) > 0.99


def test_calibration_box_detects_width_not_assumed():
    m1 = to_2d(uniform1d(256, 4, seed=0), 200)  # 20 centre lines
    rows, cols = calibration_box(m1)
    assert rows.stop - rows.start >= 20 and (cols.start, cols.stop) == (0, 200)
    m2 = poisson2d((128, 128), 8, seed=0, calib=(18, 20))
    rows, cols = calibration_box(m2)
    assert rows.stop - rows.start >= 18 and cols.stop - cols.start >= 20
    assert m2[rows, cols].all()
    flags = np.zeros(256, bool)
    flags[100:132] = True  # flagged separate ACS rows (and any fully sampled rows next to them)
    rows, _ = calibration_box(m1, acs_rows=flags)
    assert rows.start <= 100 and rows.stop >= 132 and m1[rows].all(axis=1)[~flags[rows]].all()
    full = np.ones((64, 48))
    flags = np.zeros(64, bool)
    flags[30:35] = True  # a fully sampled scan flags 5 central lines: all 64 rows calibrate
    rows, _ = calibration_box(full, acs_rows=flags)
    assert (rows.start, rows.stop) == (0, 64)


def test_prewhitening_gives_identity_covariance():
    g = torch.Generator().manual_seed(0)
    c, n = 6, 20000
    mix = torch.complex(torch.randn(c, c, generator=g), torch.randn(c, c, generator=g)) * 0.5
    mix += torch.eye(c) * 2
    white = torch.complex(torch.randn(c, n, generator=g), torch.randn(c, n, generator=g))
    noise = (mix @ white).to(torch.complex64)
    psi = noise_covariance(noise)
    assert torch.abs(psi - torch.diag(torch.diagonal(psi))).max() > 0.5  # really correlated
    w = prewhitening_matrix(noise)
    out = prewhiten(noise.reshape(1, c, 100, 200), w, coil_dim=-3).reshape(c, n)
    cov = noise_covariance(out)
    assert torch.allclose(cov, torch.eye(c, dtype=cov.dtype), atol=0.05)


def test_mvue_recovers_image_with_true_maps_and_normalisation_roundtrips():
    img, maps, ksp = phantom(64, 64, 4)
    est = mvue(ksp[None], maps)[0]
    inside = torch.sum(torch.abs(maps) ** 2, 0) > 0
    assert torch.allclose(est[inside], img[inside], atol=1e-4)
    assert torch.all(est[~inside] == 0)
    xn, s = normalise(est[None])
    assert abs(float(torch.quantile(torch.abs(xn).flatten(), 0.99)) - 1) < 1e-3
    assert torch.allclose(xn * s, est[None], atol=1e-6)
    assert center_crop(est, (32, 40)).shape == (32, 40)
    assert torch.allclose(rss(ifft2c(ksp)), torch.abs(img) * inside, atol=1e-4)


@pytest.mark.parametrize("shape,kernel", [((64, 48), (6, 6)), ((33, 40), (4, 5)), ((20, 17), (3, 6))])
def test_image_gram_equals_its_definition(shape, kernel):
    """The cross-correlation route to ``sum_k v_k v_k^H`` equals the definition: every kernel
    zero-padded at the centre, centred inverse FFT, per-pixel outer products."""
    from contextmri_core.physics.coils import _image_gram
    from contextmri_core.physics.fft import ifft2c

    g = torch.Generator().manual_seed(1)
    kernels = torch.complex(torch.randn(7, 3, *kernel, generator=g),
                            torch.randn(7, 3, *kernel, generator=g))
    ny, nx = shape
    ky, kx = kernel
    padded = torch.zeros(7, 3, ny, nx, dtype=torch.complex64)
    padded[:, :, ny // 2 - ky // 2:ny // 2 - ky // 2 + ky, nx // 2 - kx // 2:nx // 2 - kx // 2 + kx] = kernels
    v = ifft2c(padded)
    direct = torch.einsum("kcyx,kdyx->yxcd", v, v.conj()) * (ny * nx / (ky * kx))
    fast = _image_gram(kernels, shape)
    assert fast.shape == (ny, nx, 3, 3)
    assert (fast - direct).abs().max() <= 1e-5 * direct.abs().max()
