"""A published checkpoint in the reconstructor: the network sees the readout along rows (ours
keep E1 along rows), the scale is the 99th percentile over its crop, the paper's timesteps and
CFG reach the network, and a warm engine picks the UNet from each scan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from contextmri_core.service.session import Engine
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.io.models.official import ModelHandle
from contextmri_core.physics.fft import fft2c
from contextmri_core.physics.mvue import percentile_scale
from contextmri_core.recon.diffusion import DiffusionReconstructor
from contextmri_core.recon.presets import PAPER, preset_config, with_overrides
from contextmri_core.recon.stream import StreamSettings
from contextmri_core.recon.switch import UnetSwitch
from tests import mrd_helpers as h
from tests.phantom import phantom

MARK = 8  # marker offset from the centre along the readout (columns of our (E1, RO) image)
BRAIN = ScanMetadata(anatomy="brain", contrast="T2", slice_index=3, sequence="TurboSpinEcho",
                     tr_ms=6190.0, te_ms=113.0, ti_ms=100.0, flip_angle_deg=174.0)
QDESS = ScanMetadata(anatomy="knee", slice_index=4, sequence="qDESS", tr_ms=20.36, te_ms=6.428,
                     flip_angle_deg=20.0, patient_age_y=48, patient_sex="F")


def spy_unet(prior, seen):
    """Record every tensor handed to the UNet (and its timesteps)."""
    forward = prior.unet.forward

    def spy(sample, timestep, *args, **kwargs):
        seen.append((sample.detach().clone(), torch.as_tensor(timestep).clone()))
        return forward(sample, timestep, *args, **kwargs)
    prior.unet.forward = spy
    return lambda: setattr(prior.unet, "forward", forward)


def marked_scan(ny=32, nx=32, coils=4):
    """A fully sampled phantom with a bright marker MARK pixels from the centre along the
    readout only: k-space (1, C, E1, RO), maps, image."""
    img, maps, _ = phantom(ny, nx, coils, seed=2)
    img = img * 0.3
    img[ny // 2, nx // 2 + MARK] = 6.0
    return fft2c(maps * img)[None], maps[None], img


def marker_position(sample: torch.Tensor):
    """(row, column) of the brightest pixel of the network input (B, 2, H, W)."""
    mag = sample[0, 0] ** 2 + sample[0, 1] ** 2
    row, col = np.unravel_index(int(torch.argmax(mag)), tuple(mag.shape))
    return int(row), int(col)


def test_a_published_model_sees_the_readout_along_rows_ours_keep_theirs(small_published_checkpoint,
                                                                          tmp_path):
    ksp, maps, _ = marked_scan()
    mask = torch.ones(32, 32)
    published = ModelHandle(small_published_checkpoint).prior("fastmri")
    ours = load_prior(h.tiny_model(tmp_path / "ours"))
    for prior, expected in ((published, (16 + MARK, 16)), (ours, (16, 16 + MARK))):
        seen = []
        undo = spy_unet(prior, seen)
        try:
            cfg = with_overrides(preset_config(prior), steps=3)
            out = DiffusionReconstructor(prior, cfg)(ksp, mask, maps, [BRAIN])
        finally:
            undo()
        assert marker_position(seen[-1][0]) == expected, prior.normalisation.convention
        # and the image comes back in our orientation
        row, col = np.unravel_index(int(out.image[0].abs().argmax()), (32, 32))
        assert (row, col) == (16, 16 + MARK)


def test_paper_timesteps_and_fp32_reach_the_network(small_published_checkpoint):
    prior = ModelHandle(small_published_checkpoint).prior("fastmri")
    ksp, maps, _ = marked_scan()
    seen = []
    undo = spy_unet(prior, seen)
    try:
        DiffusionReconstructor(prior, with_overrides(PAPER, steps=7))(ksp, torch.ones(32, 32),
                                                                      maps, [BRAIN])
    finally:
        undo()
    saved = DDIMScheduler.load_config(str(small_published_checkpoint / "scheduler"))
    ddim = DDIMScheduler.from_config(saved)  # as recon_mri.py turns the saved DDPM config
    ddim.set_timesteps(7)
    assert [int(t[0]) for _, t in seen] == ddim.timesteps.tolist()
    assert all(s.dtype == torch.float32 for s, _ in seen)


def test_the_scale_is_the_99th_percentile_over_the_crop(small_published_checkpoint):
    """40 E1 lines on a 32x32 network: rows outside the crop are 10x brighter. The published
    prior scales by the percentile over the crop, ours over the whole grid."""
    img, maps, _ = phantom(40, 32, 4, seed=1)
    img[:4], img[-4:] = 10.0, 10.0
    ksp = fft2c(maps * img)[None]
    truth_crop = percentile_scale(img[None, 4:36].abs())
    truth_grid = percentile_scale(img[None].abs())
    prior = ModelHandle(small_published_checkpoint).prior("fastmri")
    recon = DiffusionReconstructor(prior, with_overrides(PAPER, steps=1))
    scale = recon(ksp, torch.ones(40, 32), maps[None], [BRAIN]).info["scale"]
    assert torch.allclose(scale, truth_crop, rtol=0.02) and not torch.allclose(scale, truth_grid,
                                                                              rtol=0.5)
    full = DiffusionReconstructor(prior, with_overrides(PAPER, steps=1, grid="full"))
    assert torch.allclose(full(ksp, torch.ones(40, 32), maps[None], [BRAIN]).info["scale"],
                          truth_grid, rtol=0.02)


def test_a_warm_engine_picks_the_unet_from_each_scan(small_published_checkpoint):
    engine = Engine()
    settings = engine.resolved(StreamSettings(model=str(small_published_checkpoint), steps=1,
                                              device="cpu"))
    assert (settings.preset, settings.steps, settings.guidance) == ("paper", 1, 1.0)
    recon = engine.reconstructor(settings)
    assert isinstance(recon, UnetSwitch)
    ksp, maps, _ = marked_scan()
    for meta, unet, size in ((BRAIN, "fastmri", 32), (QDESS, "skm-tea", 48)):
        prior = engine.model(settings).prior(unet)
        seen = []
        undo = spy_unet(prior, seen)
        try:
            out = recon(ksp, torch.ones(32, 32), maps, [meta])
        finally:
            undo()
        assert out.info["unet"] == unet and out.image.shape == (1, 32, 32)
        assert {tuple(s.shape[-2:]) for s, _ in seen} == {(size, size)}
    forced = engine.reconstructor(StreamSettings(model=str(small_published_checkpoint), steps=1,
                                                 unet="skm-tea", device="cpu"))
    assert isinstance(forced, DiffusionReconstructor) and forced.prior.info["unet"] == "skm-tea"
    assert forced.config.dds.timestep_rule == "scheduler" and forced.config.precision == "fp32"
    ours = engine.reconstructor(StreamSettings(model=str(small_published_checkpoint), steps=2,
                                               preset="contextmri", support_mask=False,
                                               device="cpu"))
    dds = ours.reconstructor("fastmri").config.dds
    assert (dds.steps, dds.support_mask, dds.clip, dds.timestep_rule) == (2, False, 3.0, "even")


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0, 2.0])
def test_published_cfg_in_the_reconstructor(small_published_checkpoint, scale):
    """CFG 0: the empty prompt only; 0.5 and 1: the prompt only, one call per step; 2: both."""
    prior = ModelHandle(small_published_checkpoint).prior("fastmri")
    ksp, maps, _ = marked_scan()
    tokens = []
    net = prior.unet.forward

    def spy(sample, timestep, encoder_hidden_states=None, **kwargs):
        tokens.append(encoder_hidden_states.detach().clone())
        return net(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)
    prior.unet.forward = spy
    try:
        recon = DiffusionReconstructor(prior, with_overrides(PAPER, steps=2, guidance=scale))
        recon(ksp, torch.ones(32, 32), maps, [BRAIN])
    finally:
        prior.unet.forward = net
    cond, empty = prior.encode([BRAIN]), prior.unconditional(1)
    if scale == 0.0:
        assert len(tokens) == 2 and all(torch.equal(t, empty) for t in tokens)
    elif scale <= 1.0:
        assert len(tokens) == 2 and all(torch.equal(t, cond) for t in tokens)
    else:  # CPU: two calls per step (cond, uncond)
        assert len(tokens) == 4 and torch.equal(tokens[0], cond) and torch.equal(tokens[1], empty)
