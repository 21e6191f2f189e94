"""The checkpoint directory: bit-identical round trips, a readable yaml, clear errors, atomicity."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from contextmri_core.data.metadata import ScanMetadata  # noqa: E402
from contextmri_core.errors import ContextMRIError, InputFileError  # noqa: E402
from contextmri_core.io.models import checkpoint  # noqa: E402
from contextmri_core.prior.build import new_prior  # noqa: E402
from contextmri_core.io.models.checkpoint import (  # noqa: E402
    CheckpointError, load_prior, save_prior)
from contextmri_core.prior.encoders.clip import ClipEncoderConfig  # noqa: E402
from contextmri_core.prior.encoders.factory import EncoderConfig  # noqa: E402
from contextmri_core.prior.encoders.structured import StructuredEncoderConfig  # noqa: E402
from contextmri_core.io.models.official import load_any  # noqa: E402
from contextmri_core.prior.schedule import ScheduleConfig  # noqa: E402
from tests.prior.tiny_clip import make_tiny_clip  # noqa: E402

#: The smallest UNet of the ContextMRI family diffusers accepts: width-8 blocks with 8 norm
#: groups; cross-attention group norm needs a multiple of 32 there; 2 pooling heads.
TINY_UNET = dict(block_out_channels=[8, 8, 8, 8], norm_num_groups=8, attention_head_dim=8,
                 cross_attention_dim=32, addition_embed_type_num_heads=2)
TINY_STRUCTURED = StructuredEncoderConfig(dim=32, hidden=32, num_frequencies=4)
INFO = {"command": "contextmri train --steps 3", "seed": 7, "steps": 3, "wall_time_s": 1.5,
        "data": Path("/data/knee"), "image_size": (16, 16)}
META = ScanMetadata(anatomy="knee", contrast="PDFS", slice_index=20, sequence="TurboSpinEcho",
                    tr_ms=3120.0, te_ms=33.0, flip_angle_deg=140.0)


def tiny_prior(encoder: EncoderConfig):
    return new_prior("contextmri-small", encoder=encoder, image_size=(16, 16),
                     schedule=ScheduleConfig(beta_schedule="scaled_linear"), info=INFO,
                     **TINY_UNET).eval()


@pytest.fixture(scope="module")
def structured_prior():
    return tiny_prior(EncoderConfig(kind="structured", structured=TINY_STRUCTURED))


@pytest.fixture(scope="module")
def saved(structured_prior, tmp_path_factory) -> Path:
    return save_prior(structured_prior, tmp_path_factory.mktemp("ckpt") / "model")


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    """A private copy of the saved checkpoint, free to damage."""
    return Path(shutil.copytree(saved, tmp_path / "model"))


def eps_of(prior) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.complex(torch.randn(2, 16, 16, generator=gen), torch.randn(2, 16, 16, generator=gen))
    with torch.no_grad():
        return prior.eps(x, torch.tensor([10, 900]), prior.encode([META, None]))


def edit_yaml(root: Path, change) -> None:
    path = root / "contextmri.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


# --------------------------------------------------------------------------- round trips

def test_structured_round_trip_is_bit_identical(structured_prior, saved):
    loaded = load_prior(saved)
    assert not loaded.training
    assert torch.equal(eps_of(loaded), eps_of(structured_prior))
    assert loaded.schedule == structured_prior.schedule
    assert loaded.normalisation == structured_prior.normalisation
    assert torch.equal(loaded.alphas_cumprod, structured_prior.alphas_cumprod)


def test_yaml_is_human_readable(saved, structured_prior):
    text = (saved / "contextmri.yaml").read_text()
    assert "!!python" not in text and "block_out_channels:" in text
    doc = yaml.safe_load(text)
    assert doc["format_version"] == 1
    assert doc["contextmri_version"] == checkpoint.__version__
    assert doc["unet"]["block_out_channels"] == [8, 8, 8, 8]
    assert doc["unet"]["in_channels"] == 2 and doc["unet"]["cross_attention_norm"] == "group_norm"
    assert not any(k.startswith("_") for k in doc["unet"])
    assert doc["encoder"] == structured_prior.encoder.config.to_dict()
    assert doc["schedule"]["beta_schedule"] == "scaled_linear"
    assert doc["normalisation"] == {"percentile": 0.99, "image_size": [16, 16],
                                    "convention": "contextmri"}
    assert doc["info"] == {"command": "contextmri train --steps 3", "seed": 7, "steps": 3,
                           "wall_time_s": 1.5, "data": "/data/knee", "image_size": [16, 16]}
    assert sorted(p.name for p in saved.iterdir()) == [
        "contextmri.yaml", "encoder.safetensors", "unet.safetensors"]


def test_fused_with_clip_round_trip_is_self_contained(tmp_path):
    clip_dir = make_tiny_clip(tmp_path / "clip")
    prior = tiny_prior(EncoderConfig(kind="fused", structured=TINY_STRUCTURED,
                                     clip=ClipEncoderConfig(path=str(clip_dir))))
    expected, cond = eps_of(prior), prior.encode([META])
    root = save_prior(prior, tmp_path / "model")
    shutil.rmtree(clip_dir)  # the checkpoint must not refer to the original CLIP directory
    assert (root / "text_encoder").is_dir() and (root / "tokenizer").is_dir()
    doc = yaml.safe_load((root / "contextmri.yaml").read_text())
    assert doc["encoder"]["kind"] == "fused" and doc["encoder"]["clip"]["path"] == "."
    clip_keys = [k for k in load_file(str(root / "encoder.safetensors")) if "text_model" in k]
    assert clip_keys == []  # CLIP travels as text_encoder/, not inside encoder.safetensors
    loaded = load_prior(root)
    assert torch.equal(loaded.encode([META]), cond)
    assert torch.equal(eps_of(loaded), expected)
    shutil.rmtree(root / "tokenizer")
    with pytest.raises(CheckpointError, match="contextmri.yaml: section 'encoder'.*tokenizer"):
        load_prior(root)


def test_load_casts_networks_not_schedule(saved):
    loaded = load_prior(saved, dtype=torch.float64)
    assert next(loaded.unet.parameters()).dtype == torch.float64
    assert next(loaded.encoder.parameters()).dtype == torch.float64
    assert loaded.alphas_cumprod.dtype == torch.float32
    assert eps_of(loaded).dtype == torch.complex64


# ------------------------------------------------------------------------------- errors

def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.*no such model directory"):
        load_prior(tmp_path / "nowhere")


def test_missing_yaml(copy):
    (copy / "contextmri.yaml").unlink()
    with pytest.raises(CheckpointError, match=r"contextmri\.yaml: missing"):
        load_prior(copy)


@pytest.mark.parametrize("version, message", [(2, "newer contextmri.*upgrade"),
                                              (0, "unknown format_version 0"),
                                              ("one", "not an integer"), (None, "missing")])
def test_bad_format_version(copy, version, message):
    edit_yaml(copy, lambda d: d.update(format_version=version))
    with pytest.raises(CheckpointError, match=message):
        load_prior(copy)


def test_missing_section(copy):
    edit_yaml(copy, lambda d: d.pop("schedule"))
    with pytest.raises(CheckpointError, match="contextmri.yaml.*schedule missing"):
        load_prior(copy)


@pytest.mark.parametrize("name", ["unet.safetensors", "encoder.safetensors"])
def test_missing_weights(copy, name):
    (copy / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name}: missing"):
        load_prior(copy)


@pytest.mark.parametrize("name", ["unet.safetensors", "encoder.safetensors"])
def test_truncated_weights(copy, name):
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{name}: corrupt or truncated"):
        load_prior(copy)


def test_tensor_shape_mismatch_is_named(copy):
    tensors = load_file(str(copy / "unet.safetensors"))
    tensors["conv_in.weight"] = torch.zeros(8, 2, 1, 1)
    save_file(tensors, str(copy / "unet.safetensors"))
    with pytest.raises(CheckpointError, match=r"'conv_in.weight' has shape \(8, 2, 1, 1\).*"
                                              r"\(8, 2, 3, 3\)"):
        load_prior(copy)


def test_yaml_that_does_not_fit_the_weights(copy):
    edit_yaml(copy, lambda d: d["encoder"]["structured"].update(hidden=16))
    with pytest.raises(CheckpointError, match="encoder.safetensors: tensor '.*' has shape"):
        load_prior(copy)
    edit_yaml(copy, lambda d: d["unet"].update(layers_per_block=2))
    with pytest.raises(CheckpointError, match="unet.safetensors: tensor '.*' is missing"):
        load_prior(copy)


def test_invalid_unet_section_names_the_yaml(copy):
    edit_yaml(copy, lambda d: d["unet"].update(no_such_option=1))
    with pytest.raises(CheckpointError, match="contextmri.yaml: section 'unet'.*no_such_option"):
        load_prior(copy)


def test_errors_belong_to_the_hierarchy():
    assert issubclass(CheckpointError, InputFileError)
    assert issubclass(CheckpointError, ContextMRIError)


# ---------------------------------------------------------------------------- atomicity

def test_refuses_to_overwrite(structured_prior, saved):
    with pytest.raises(CheckpointError, match="already exists.*overwrite=True"):
        save_prior(structured_prior, saved)


def test_overwrite_replaces_and_leaves_nothing_behind(structured_prior, copy):
    (copy / "stale.txt").write_text("old")
    save_prior(structured_prior, copy, overwrite=True)
    assert not (copy / "stale.txt").exists()
    assert sorted(p.name for p in copy.parent.iterdir()) == ["model"]
    assert torch.equal(eps_of(load_prior(copy)), eps_of(structured_prior))


def _failing_second_write(monkeypatch):
    calls = []

    def fake_save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("disk full")
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fake_save_file)


def test_failed_save_leaves_no_directory(structured_prior, tmp_path, monkeypatch):
    _failing_second_write(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_prior(structured_prior, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_checkpoint(structured_prior, copy, monkeypatch):
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    _failing_second_write(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_prior(structured_prior, copy, overwrite=True)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    assert sorted(p.name for p in copy.parent.iterdir()) == ["model"]


def test_load_any_reads_a_contextmri_checkpoint(saved, structured_prior, tmp_path):
    assert torch.equal(eps_of(load_any(saved)), eps_of(structured_prior))
    with pytest.raises(CheckpointError, match="contextmri.yaml.*fastmri/ and/or skm-tea/"):
        load_any(tmp_path)
