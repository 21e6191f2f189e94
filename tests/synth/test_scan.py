"""Simulated scans: contract shapes, determinism, physics of coils/noise, labels, geometry."""

from __future__ import annotations

import numpy as np
import pytest

from contextmri_core.errors import ConfigError
from contextmri_core.synth.anatomy import TISSUES, lesion_mask
from contextmri_core.synth.fields import correlation_matrix
from contextmri_core.synth.scan import SimConfig, crop_readout, ifft2c, simulate

SMALL = SimConfig(matrix=64, num_coils=4, num_slices=2, lesion_probability=1.0)


@pytest.fixture(scope="module")
def scan():
    return simulate(7, "AXFLAIR", SMALL)


def test_shapes_and_dtypes(scan):
    s, c, n = 2, 4, 64
    assert scan.kspace.shape == (s, c, n, 2 * n) and scan.kspace.dtype == np.complex64
    assert scan.noise.shape == (c, SMALL.noise_samples) and scan.noise.dtype == np.complex64
    assert scan.image.shape == (s, n, n) and scan.image.dtype == np.complex64
    assert scan.coil_maps.shape == (s, c, n, n) and scan.coil_maps.dtype == np.complex64
    assert scan.tissue.shape == (s, len(TISSUES), n, n)
    assert scan.noise_covariance.shape == (c, c)
    assert scan.plan.imaging.shape == (n,) and scan.plan.imaging.all()
    assert len(scan.pathology) == s and len(scan.coil_names) == c
    assert scan.metadata.contrast == "FLAIR" and scan.metadata.anatomy == "brain"
    assert scan.metadata.ti_ms == scan.protocol.ti_ms


def test_same_seed_same_bytes_other_seed_differs(scan):
    again = simulate(7, "AXFLAIR", SMALL)
    assert again.kspace.tobytes() == scan.kspace.tobytes()
    assert again.noise.tobytes() == scan.noise.tobytes()
    other = simulate(8, "AXFLAIR", SMALL)
    assert not np.allclose(other.kspace, scan.kspace)


def test_coil_maps_are_normalised_and_smooth(scan):
    rss = np.sqrt(np.sum(np.abs(scan.coil_maps) ** 2, axis=1))
    np.testing.assert_allclose(rss, 1.0, atol=1e-5)
    mag = np.abs(scan.coil_maps[0])
    assert np.max(np.abs(np.diff(mag, axis=-1))) < 0.1  # no jumps between neighbours
    assert (mag.max(axis=(1, 2)) / mag.min(axis=(1, 2)) > 2).all()  # but real falloff


def test_noise_covariance_is_correlated_and_matches_the_noise_scan(scan):
    psi = scan.noise_covariance
    np.testing.assert_allclose(psi, psi.conj().T, atol=1e-12)
    assert np.linalg.eigvalsh(psi).min() > 0
    corr = correlation_matrix(psi) - np.eye(psi.shape[0])
    assert corr.max() > 0.15  # prewhitening matters
    est = scan.noise @ scan.noise.conj().T / scan.noise.shape[1]
    np.testing.assert_allclose(est, psi, atol=0.15 * np.abs(np.diag(psi)).mean())


def test_kspace_noise_level_follows_the_snr(scan):
    clean = simulate(7, "AXFLAIR", SimConfig(**{**SMALL.__dict__, "snr": None}))
    residual = scan.kspace - clean.kspace
    std = np.sqrt(np.mean(np.abs(residual) ** 2))
    assert std == pytest.approx(scan.noise_std, rel=0.15)
    brain = (scan.tissue[:, 0] + scan.tissue[:, 1]) > 0.5
    assert np.mean(np.abs(scan.image[brain])) / scan.noise_std == pytest.approx(40, rel=1e-3)


def test_ifft_and_readout_crop_reproduce_the_coil_images():
    clean = simulate(3, "AXT2", SimConfig(**{**SMALL.__dict__, "snr": None}))
    coil_images = crop_readout(ifft2c(clean.kspace), clean.config.matrix)
    np.testing.assert_allclose(coil_images, clean.coil_images, atol=1e-5 * np.abs(
        clean.coil_images).max())
    # the object sits inside the reconstructed FOV: nothing outside the readout crop
    full = np.abs(ifft2c(clean.kspace))
    n = clean.config.matrix
    outside = np.concatenate([full[..., : n // 2], full[..., -n // 2:]], axis=-1)
    assert outside.max() < 1e-3 * full.max()


def test_lesion_label_appears_exactly_in_slices_with_lesion_pixels():
    for seed in range(4):
        s = simulate(seed, "AXT2", SimConfig(matrix=64, num_coils=2, num_slices=4,
                                             lesion_probability=1.0, snr=None))
        masks = lesion_mask(s.tissue)
        assert np.array_equal(masks, s.lesion_masks)
        for i, labels in enumerate(s.pathology):
            assert bool(labels) == bool(masks[i].any())
            assert s.slice_metadata(i).pathology == labels
        for b in s.boxes:
            box = masks[b.slice, b.x:b.x + b.width, b.y:b.y + b.height]
            assert box.any() and b.label == "White Matter Lesion"
        assert {b.slice for b in s.boxes} == {i for i, p in enumerate(s.pathology) if p}
    healthy = simulate(1, "AXT2", SimConfig(matrix=64, num_coils=2, num_slices=2,
                                            lesion_probability=0.0))
    assert healthy.pathology == ((), ()) and not healthy.boxes


def test_lesions_are_bright_on_flair():
    """A stack through a known lesion (template anatomy, no placement: MNI z - 15 is the
    scanner z): the lesion is brighter than white matter on FLAIR."""
    import dataclasses

    from contextmri_core.synth.anatomy import Lesion
    from contextmri_core.synth.orientation import draw_geometry
    from contextmri_core.synth.protocols import draw_protocol
    from contextmri_core.synth.scan import draw_config_subject, simulate_scan

    cfg = SimConfig(matrix=96, num_coils=2, num_slices=1, lesion_probability=0.0, snr=None,
                    augment=False, deformation_strength=0.0, atrophy_strength=0.0)
    rng = np.random.default_rng(2)
    subject = dataclasses.replace(draw_config_subject(rng, cfg, 0), lesions=(
        Lesion((26.0, -10.0, 25.0), (6.0, 6.0, 6.0), 0.0),))
    geom = draw_geometry(rng, "axial", 96, 2.5, 3.0, 1)
    geom = dataclasses.replace(geom, positions_mm=((0.0, 0.0, 10.0),))
    s = simulate_scan(subject, draw_protocol("AXFLAIR", rng), cfg, rng, geometry=geom)
    les = s.tissue[:, TISSUES.index("lesion")] + s.tissue[:, TISSUES.index("lesion_enhancing")]
    wm = s.tissue[:, TISSUES.index("wm")]
    mag = np.abs(s.image)
    assert (les > 0.8).any() and s.pathology == (("White Matter Lesion",),)
    assert mag[les > 0.8].mean() > 1.2 * mag[wm > 0.9].mean()


def test_augmentation_changes_geometry():
    base = SimConfig(matrix=64, num_coils=2, num_slices=1, snr=None, lesion_probability=0.0)
    fixed = SimConfig(**{**base.__dict__, "augment": False})
    a, b = simulate(1, "AXT2", base), simulate(2, "AXT2", base)
    c, d = simulate(1, "AXT2", fixed), simulate(2, "AXT2", fixed)
    head = lambda s: s.tissue[0, :7].sum(axis=0) > 0.5  # noqa: E731
    assert a.subject.placement != b.subject.placement
    assert np.mean(head(a) != head(b)) > 0.02
    assert c.subject.placement == d.subject.placement
    assert a.subject.placement.scale != 1.0


def test_undersampled_plan_embedded_and_separate():
    emb = simulate(4, "AXT1", SimConfig(**{**SMALL.__dict__, "acceleration": 4}))
    assert emb.plan.imaging.sum() == 64 // 4
    assert emb.plan.acs.sum() == int(64 * 0.08) and (emb.plan.imaging[emb.plan.acs]).all()
    k = emb.acquired_kspace()
    assert np.all(k[:, :, ~emb.plan.imaging] == 0)
    sep = simulate(4, "AXT1", SimConfig(**{**SMALL.__dict__, "acceleration": 4,
                                           "calibration": "separate"}))
    assert sep.plan.mode == "separate"


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="num_coils"):
        SimConfig(num_coils=0)
    with pytest.raises(ConfigError, match="AXT9"):
        simulate(0, "AXT9", SMALL)
