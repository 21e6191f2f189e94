"""Published ContextMRI checkpoints: a tiny model of the paper's family in the exact diffusers
layout, loaded offline, must give the same eps as the network it was saved from."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

from contextmri_core.data.metadata import ScanMetadata  # noqa: E402
from contextmri_core.data.prompt import build_prompt  # noqa: E402
from contextmri_core.io.models.checkpoint import (  # noqa: E402
    CheckpointError, load_prior, save_prior)
from contextmri_core.prior.model import from_channels, to_channels  # noqa: E402
from contextmri_core.io.models.official import load_any, load_official  # noqa: E402
from contextmri_core.prior.presets import unet_config  # noqa: E402
from tests.prior.tiny_clip import make_tiny_clip  # noqa: E402

CLIP_WIDTH = 32  # make_tiny_clip's hidden size
#: The paper preset's block types and conditioning path at tiny widths.
TINY_PAPER = dict(sample_size=16, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
                  attention_head_dim=8, norm_num_groups=8, cross_attention_dim=CLIP_WIDTH,
                  encoder_hid_dim=CLIP_WIDTH, addition_embed_type_num_heads=2)
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 beta_schedule="scaled_linear")
META = ScanMetadata(anatomy="brain", contrast="FLAIR", slice_index=3, sequence="TurboSpinEcho",
                    tr_ms=9000.0, te_ms=86.0, ti_ms=2500.0, flip_angle_deg=150.0)


def write_published(root: Path, **unet_overrides) -> UNet2DConditionModel:
    """A randomly initialised model saved exactly as a published ContextMRI checkpoint."""
    cfg = unet_config("contextmri-paper", **dict(TINY_PAPER, **unet_overrides))
    unet = UNet2DConditionModel(**cfg).eval()
    unet.save_pretrained(str(root / "unet"))
    make_tiny_clip(root)
    DDPMScheduler(**SCHEDULER).save_config(str(root / "scheduler"))
    return unet


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    return root, write_published(root)


@pytest.fixture
def copy(published, tmp_path) -> Path:
    return Path(shutil.copytree(published[0], tmp_path / "published"))


def noisy_input():
    gen = torch.Generator().manual_seed(1)
    x = torch.complex(torch.randn(2, 16, 16, generator=gen), torch.randn(2, 16, 16, generator=gen))
    return x, torch.tensor([5, 750])


def reference_eps(root: Path, unet: UNet2DConditionModel, x, t, prompts) -> torch.Tensor:
    """eps of the original UNet on CLIP tokens computed straight from transformers."""
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    clip = CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True).eval()
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        tokens = clip(ids).last_hidden_state
        return from_channels(unet(to_channels(x), t, encoder_hidden_states=tokens).sample)


def test_loaded_prior_matches_the_published_network(published, no_network):
    root, unet = published
    prior = load_official(root)
    x, t = noisy_input()
    with torch.no_grad():
        eps = prior.eps(x, t, prior.encode([META, None]))
    expected = reference_eps(root, unet, x, t, [build_prompt(META), ""])
    assert eps.shape == (2, 16, 16) and eps.dtype == torch.complex64
    assert torch.equal(eps, expected)
    assert not prior.training


def test_schedule_and_normalisation(published, no_network):
    prior = load_official(published[0])
    scheduler = DDPMScheduler(**SCHEDULER)
    assert prior.schedule.beta_schedule == "scaled_linear"
    assert torch.allclose(prior.alphas_cumprod, scheduler.alphas_cumprod, rtol=1e-6, atol=1e-7)
    assert prior.normalisation.percentile == 0.99
    assert prior.normalisation.image_size == (16, 16)
    assert prior.encoder.config.kind == "clip"


def test_eps_on_an_image_that_needs_padding(published, no_network):
    prior = load_official(published[0])
    x = torch.randn(1, 20, 12, dtype=torch.complex64)
    with torch.no_grad():
        eps = prior.eps(x, torch.tensor([999]), prior.unconditional(1))
    assert eps.shape == (1, 20, 12) and torch.isfinite(torch.view_as_real(eps)).all()


def test_load_any_dispatches_and_a_published_prior_can_be_resaved(published, tmp_path,
                                                                  no_network):
    prior = load_any(published[0])
    x, t = noisy_input()
    cond = prior.encode([META, META])
    with torch.no_grad():
        expected = prior.eps(x, t, cond)
    again = load_prior(save_prior(prior, tmp_path / "converted"))
    with torch.no_grad():
        assert torch.equal(again.eps(x, t, again.encode([META, META])), expected)


@pytest.mark.parametrize("part, named", [("unet", "unet/config.json"), ("tokenizer", "tokenizer"),
                                         ("text_encoder", "text_encoder"),
                                         ("scheduler", "scheduler/scheduler_config.json")])
def test_missing_part_is_named(copy, part, named, no_network):
    shutil.rmtree(copy / part)
    with pytest.raises(CheckpointError, match=f"missing {named}"):
        load_official(copy)


def test_missing_unet_weights(copy, no_network):
    (copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="cannot load the UNet"):
        load_official(copy)


def test_load_any_on_an_unknown_directory_says_what_is_needed(copy):
    shutil.rmtree(copy / "unet")
    with pytest.raises(CheckpointError, match="contextmri.yaml.*unet/config.json.*tokenizer/"):
        load_any(copy)


def test_non_epsilon_prediction_is_refused(copy, no_network):
    path = copy / "scheduler" / "scheduler_config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps(dict(cfg, prediction_type="v_prediction")))
    with pytest.raises(CheckpointError, match="scheduler_config.json.*epsilon"):
        load_official(copy)


def test_wrong_channel_count_is_refused(tmp_path, no_network):
    write_published(tmp_path, in_channels=4, out_channels=4)
    with pytest.raises(CheckpointError, match="in_channels=4, out_channels=4.*2 \\(real, imag\\)"):
        load_official(tmp_path)


def test_condition_width_mismatch_is_refused(tmp_path, no_network):
    write_published(tmp_path, cross_attention_dim=64, encoder_hid_dim=64)
    with pytest.raises(CheckpointError, match="width 64 but text_encoder/ gives 32"):
        load_official(tmp_path)


def test_a_published_layout_model_runs_a_dds_step(published, no_network):
    """The official-layout loader feeds the Reconstructor: one DDS step (CFG 2 -> the network
    sees cond and uncond CLIP tokens in one batch) on a 2-slice, 4-coil, x4 problem."""
    from contextmri_core.data.metadata import ScanMetadata
    from contextmri_core.physics.masks import make_mask
    from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
    from contextmri_core.sampling.dds import DDSConfig
    from tests.phantom import phantom

    prior = load_official(published[0])
    img, maps, ksp = phantom(24, 24, 4)
    mask = torch.from_numpy(make_mask("uniform1d:4:0.4", (24, 24), seed=0))
    meta = [ScanMetadata(anatomy="knee", contrast="PDFS", slice_index=i, tr_ms=3000.0) for i in (3, 4)]
    recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=1, guidance=2.0)))
    out = recon(torch.stack([ksp, ksp]), mask, torch.stack([maps, maps]), meta)
    assert out.image.shape == (2, 24, 24) and torch.isfinite(out.image).all()
    assert out.info["steps"] == 1
