"""Classical reconstructions on a simulated x4 uniform1d brain slice (through the real file
path: ISMRMRD writer -> reader -> prewhitening -> ESPIRiT), and ESPIRiT vs BART on it."""

import numpy as np
import pytest
import torch

from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import L1WaveletRecon, SenseRecon, ZeroFilledRecon
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import prepare_scan, prepare_slices, undersample
from contextmri_core.synth.scan import SimConfig, simulate
from tests.core.test_espirit_bart import bart_ecalib, normalised_inner


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    cfg = SimConfig(matrix=128, num_slices=2, num_coils=8, lesion_probability=1.0)
    path = write_ismrmrd(tmp_path_factory.mktemp("brain") / "file_brain_AXT2_t.h5",
                         simulate(7, "AXT2", cfg))
    return read_scan(path)


@pytest.fixture(scope="module")
def x4(brain):
    full = prepare_scan(brain)
    reference = mvue(full.kspace, full.maps)
    mask = make_mask("uniform1d:4", brain.slices[0].mask.shape, seed=1)
    batch = prepare_slices([undersample(s, mask) for s in brain.slices], brain.noise)
    return reference, batch


def test_sense_and_l1_wavelet_beat_zero_filled_by_a_clear_margin(x4):
    reference, b = x4
    zf = score_slices(ZeroFilledRecon()(b.kspace, b.mask, b.maps).image, reference)
    sense = score_slices(SenseRecon()(b.kspace, b.mask, b.maps).image, reference)
    l1 = score_slices(L1WaveletRecon()(b.kspace, b.mask, b.maps).image, reference)
    print(f"x4 PSNR/SSIM zero-filled {zf}, SENSE {sense}, L1-wavelet {l1}")
    assert sense["psnr"] > zf["psnr"] + 4.0
    assert l1["psnr"] > zf["psnr"] + 4.0
    assert sense["ssim"] > zf["ssim"] + 0.15 and l1["ssim"] > zf["ssim"] + 0.15


def test_reconstructions_keep_the_data_scale(x4):
    reference, b = x4
    for recon in (SenseRecon(), L1WaveletRecon(n_iter=30)):
        img = recon(b.kspace, b.mask, b.maps).image
        ratio = float(torch.sum(img.abs() * reference.abs()) / torch.sum(reference.abs() ** 2))
        assert 0.8 < ratio < 1.2, recon.name


def test_espirit_on_synthetic_brain_agrees_with_bart(brain, tmp_path):
    mask = make_mask("uniform1d:4", brain.slices[0].mask.shape, seed=1)
    sl = undersample(brain.slices[0], mask)
    ours = prepare_slices([sl], None).maps[0].numpy()
    ref = bart_ecalib(sl.kspace, tmp_path)
    both = (np.abs(ours).sum(0) > 0) & (np.abs(ref).sum(0) > 0)
    signal = np.abs(mvue(torch.from_numpy(brain.slices[0].kspace[None]),
                         torch.from_numpy(ours))[0].numpy())
    inside = both & (signal > 0.1 * np.percentile(signal, 99))
    ip = normalised_inner(ref, ours)[inside]
    print(f"ESPIRiT vs BART ecalib: median |<s_ours, s_bart>| = {np.median(ip):.4f} "
          f"over {inside.sum()} object pixels")
    assert inside.sum() > 2000
    assert np.median(ip) >= 0.99
