"""The DiffusionReconstructor with the shipped default prior on simulated brain slices."""

import os

import pytest
import torch

from contextmri_core.io.models.checkpoint import load_prior, save_prior
from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import ZeroFilledRecon
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import prepare_scan, prepare_slices, undersample
from contextmri_core.sampling.dds import DDSConfig
from contextmri_core.synth.scan import SimConfig, simulate

MODEL = os.environ.get("CONTEXTMRI_TEST_MODEL", str(DEFAULT_MODEL_DIR))


@pytest.fixture(scope="module")
def prior():
    return load_prior(MODEL)


@pytest.fixture(scope="module")
def x4(tmp_path_factory):
    """A held-out simulated T2 slice (seed not in the training set), uniform1d x4."""
    cfg = SimConfig(matrix=128, num_slices=1, num_coils=8, lesion_probability=1.0)
    path = write_ismrmrd(tmp_path_factory.mktemp("x4") / "file_brain_AXT2_x.h5", simulate(991, "AXT2", cfg))
    scan = read_scan(path)
    full = prepare_scan(scan)
    mask = make_mask("uniform1d:4", scan.slices[0].mask.shape, seed=2)
    return mvue(full.kspace, full.maps), prepare_slices([undersample(s, mask) for s in scan.slices], scan.noise)


def test_dds_beats_zero_filled_by_a_clear_margin(prior, x4):
    ref, b = x4
    zf = score_slices(ZeroFilledRecon()(b.kspace, b.mask, b.maps).image, ref)
    recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=30)))
    dds = score_slices(recon(b.kspace, b.mask, b.maps, b.metadata).image, ref)
    print(f"x4 zero-filled {zf}, DDS {dds}")
    assert dds["psnr"] > zf["psnr"] + 3.0
    assert dds["ssim"] > zf["ssim"] + 0.1


def test_same_seed_same_image_and_checkpoint_roundtrip_is_bit_identical(prior, x4, tmp_path):
    _, b = x4
    cfg = DiffusionReconConfig(dds=DDSConfig(steps=3, guidance=2.0), seed=5)
    first = DiffusionReconstructor(prior, cfg)(b.kspace, b.mask, b.maps, b.metadata).image
    again = DiffusionReconstructor(prior, cfg)(b.kspace, b.mask, b.maps, b.metadata).image
    assert torch.equal(first, again)
    reloaded = load_prior(save_prior(prior, tmp_path / "copy"))
    assert torch.equal(DiffusionReconstructor(reloaded, cfg)(b.kspace, b.mask, b.maps, b.metadata).image,
                       first)
    other = DiffusionReconstructor(prior, DiffusionReconConfig(dds=cfg.dds, seed=6))
    assert not torch.equal(other(b.kspace, b.mask, b.maps, b.metadata).image, first)


def test_ensemble_gives_an_uncertainty_map_and_dps_runs(prior, x4):
    _, b = x4
    ens = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=3), ensemble_size=2))
    out = ens(b.kspace, b.mask, b.maps, b.metadata)
    assert out.uncertainty is not None and out.uncertainty.shape == out.image.shape
    assert float(out.uncertainty.max()) > 0
    dps = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=2), sampler="dps"))
    img = dps(b.kspace, b.mask, b.maps, b.metadata).image
    assert torch.isfinite(img).all()


def test_data_scale_is_kept(prior, x4):
    ref, b = x4
    out = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=5)))(
        b.kspace, b.mask, b.maps, b.metadata).image
    ratio = float(torch.sum(out.abs() * ref.abs()) / torch.sum(ref.abs() ** 2))
    assert 0.8 < ratio < 1.2
