"""The published ContextMRI release's folder layout (``MRI_checkpoint/``: ``fastmri/``,
``skm-tea/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``, ``model_index.json``, no
``unet/``) loads offline as priors of the published convention: the same eps as the saved
network fed the way it was trained (readout along rows, published CLIP prompt); anything else is
refused with one error that names both layouts."""

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
from contextmri_core.data.published import published_prompt  # noqa: E402
from contextmri_core.errors import ConfigError  # noqa: E402
from contextmri_core.io.models.checkpoint import CheckpointError, load_prior, save_prior  # noqa: E402
from contextmri_core.io.models.official import (ModelHandle, inspect_model, load_any,  # noqa: E402
                                         load_official)
from contextmri_core.prior.model import from_channels, to_channels  # noqa: E402
from tests.prior.published_layout import SCHEDULER, write_unet  # noqa: E402

KNEE = ScanMetadata(anatomy="knee", contrast="PDFS", slice_index=20, sequence="TurboSpinEcho",
                    tr_ms=3120.0, te_ms=33.0, ti_ms=100.0, flip_angle_deg=140.0,
                    patient_age_y=48, patient_sex="F")
BOTH_LAYOUTS = r"contextmri.yaml.*fastmri/ and/or skm-tea/.*scheduler_config.json.*text_encoder/"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def copy(published_checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(published_checkpoint, tmp_path / "MRI_checkpoint"))


def noisy(shape=(2, 24, 16), seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))


def reference_eps(root: Path, unet_dir: str, x, t, prompts) -> torch.Tensor:
    """eps of the saved UNet, fed as the published code feeds it: CLIP tokens of the prompt
    straight from transformers, the image with the readout along rows (our (E1, RO) image
    transposed), the answer transposed back."""
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    clip = CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True).eval()
    unet = UNet2DConditionModel.from_pretrained(str(root / unet_dir), local_files_only=True).eval()
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        tokens = clip(ids)[0]
        out = unet(to_channels(x.transpose(-2, -1)), t, encoder_hidden_states=tokens).sample
    return from_channels(out).transpose(-2, -1)


def test_the_published_folder_loads_the_fastmri_unet_by_default(published_checkpoint):
    folder = inspect_model(published_checkpoint)
    assert (folder.kind, folder.unets, folder.unet) == ("published", ("fastmri", "skm-tea"), None)
    assert not (published_checkpoint / "unet").exists()
    prior = load_any(published_checkpoint)
    assert prior.info["unet"] == "fastmri" and not prior.training
    norm = prior.normalisation
    assert (norm.convention, norm.image_size, norm.percentile) == ("published", (320, 320), 0.99)
    assert prior.encoder.clip_config.prompt_style == "published"
    assert prior.encoder.clip_config.demographic is False


@pytest.mark.parametrize("unet, form", [("fastmri", "fastmri"), ("skm-tea", "skm-tea")])
def test_eps_is_the_published_network_fed_as_in_training(published_checkpoint, unet, form):
    prior = load_any(published_checkpoint, unet=unet)
    x, t = noisy(), torch.tensor([5, 750])
    with torch.no_grad():
        eps = prior.eps(x, t, prior.encode([KNEE, None]))
    expected = reference_eps(published_checkpoint, unet, x, t, [published_prompt(KNEE, form), ""])
    assert eps.shape == x.shape and eps.dtype == torch.complex64
    assert torch.allclose(eps, expected, atol=1e-6)
    assert prior.encoder.prompts([KNEE])[0] == published_prompt(KNEE, form)


def test_skm_tea_uses_the_demographic_prompt_and_its_own_size(published_checkpoint):
    handle = ModelHandle(published_checkpoint)
    fast, skm = handle.prior("fastmri"), handle.prior("skm-tea")
    assert skm.normalisation.image_size == (512, 512) and skm.info["unet"] == "skm-tea"
    assert skm.encoder.prompts([KNEE]) == [
        "Qdess, Knee, Slice 20, Age: 48, Sex: F, TR: 3120, TE: 33, Flip Angle: 140"]
    assert skm.encoder.text_model is fast.encoder.text_model  # one CLIP for both UNets
    assert handle.prior("skm-tea") is skm and handle.is_loaded("skm-tea")


def test_a_path_to_one_unet_folder_loads_that_unet(published_checkpoint):
    folder = inspect_model(published_checkpoint / "skm-tea")
    assert (folder.root, folder.unet) == (published_checkpoint, "skm-tea")
    handle = ModelHandle(published_checkpoint / "skm-tea")
    assert handle.unets == ()  # nothing to choose: the path named the UNet
    assert handle.prior().info["unet"] == "skm-tea"
    assert load_official(published_checkpoint / "fastmri").info["unet"] == "fastmri"


def test_a_unet_folder_written_by_the_release_convert_script_counts_too(copy):
    shutil.rmtree(copy / "skm-tea")
    (copy / "fastmri").rename(copy / "unet")
    folder = inspect_model(copy)
    assert folder.unets == ("unet",)
    assert load_any(copy).info["unet"] == "unet"


def test_schedule_follows_the_saved_scheduler_config(published_checkpoint):
    prior = load_any(published_checkpoint)
    s = prior.schedule
    assert (s.beta_schedule, s.timestep_spacing, s.steps_offset) == ("scaled_linear", "leading", 1)
    assert torch.allclose(prior.alphas_cumprod, DDPMScheduler(**SCHEDULER).alphas_cumprod,
                          rtol=1e-6, atol=1e-7)


def test_our_checkpoint_format_keeps_working_and_keeps_the_convention(published_checkpoint,
                                                                      tmp_path):
    prior = load_any(published_checkpoint)
    x, t = noisy(), torch.tensor([5, 750])
    with torch.no_grad():
        expected = prior.eps(x, t, prior.encode([KNEE, KNEE]))
    again = load_any(save_prior(prior, tmp_path / "converted"))
    assert inspect_model(tmp_path / "converted").kind == "contextmri"
    assert again.normalisation == prior.normalisation
    assert again.encoder.clip_config.prompt_style == "published"
    with torch.no_grad():
        assert torch.equal(again.eps(x, t, again.encode([KNEE, KNEE])), expected)
    with pytest.raises(ConfigError, match="--unet applies to the published release only"):
        ModelHandle(tmp_path / "converted").prior("skm-tea")
    assert load_prior(tmp_path / "converted").normalisation.convention == "published"


@pytest.mark.parametrize("remove, missing", [("text_encoder", "text_encoder/"),
                                             ("tokenizer", "tokenizer/"),
                                             ("scheduler", "scheduler/scheduler_config.json")])
def test_a_malformed_folder_names_what_is_missing_and_both_layouts(copy, remove, missing):
    shutil.rmtree(copy / remove)
    for path in (copy, copy / "fastmri"):
        with pytest.raises(CheckpointError, match=f"lacks {missing}") as err:
            load_any(path)
        assert all(s in str(err.value) for s in ("contextmri.yaml", "fastmri/", "skm-tea/",
                                                 "model_index.json"))


def test_no_unet_folder_and_unknown_folders_are_refused(copy, tmp_path):
    for name in ("fastmri", "skm-tea"):
        shutil.rmtree(copy / name)
    with pytest.raises(CheckpointError, match="lacks a UNet folder"):
        load_any(copy)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="is not a model directory: it must be either"):
        load_any(tmp_path / "stuff")
    with pytest.raises(CheckpointError, match=BOTH_LAYOUTS):
        load_any(tmp_path / "stuff")
    with pytest.raises(CheckpointError, match="no such model directory"):
        load_any(tmp_path / "nowhere")


def test_unknown_unet_name_and_damaged_parts(copy):
    with pytest.raises(ConfigError, match="unet 'knee'.*holds fastmri, skm-tea"):
        load_any(copy, unet="knee")
    (copy / "fastmri" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="cannot load the UNet"):
        load_any(copy)
    cfg_path = copy / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps(dict(cfg, prediction_type="v_prediction")))
    with pytest.raises(CheckpointError, match="scheduler_config.json.*epsilon"):
        load_any(copy, unet="skm-tea")


def test_wrong_channels_and_condition_width_are_refused(copy):
    shutil.rmtree(copy / "fastmri")
    write_unet(copy / "fastmri", 32, in_channels=4, out_channels=4)
    with pytest.raises(CheckpointError, match="in_channels=4, out_channels=4.*2 \\(real, imag\\)"):
        load_any(copy)
    shutil.rmtree(copy / "fastmri")
    write_unet(copy / "fastmri", 32, cross_attention_dim=64, encoder_hid_dim=64)
    with pytest.raises(CheckpointError, match="width 64 but text_encoder/ gives 32"):
        load_any(copy)
