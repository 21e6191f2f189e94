"""Condition encoders: structured tokens, offline CLIP, fusion, configs and dropout masks."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from contextmri_core.data.metadata import ScanMetadata  # noqa: E402
from contextmri_core.errors import ConfigError  # noqa: E402
from contextmri_core.prior.encoders.base import ConditionEncoder  # noqa: E402
from contextmri_core.prior.encoders.clip import ClipEncoderConfig, ClipTextEncoder  # noqa: E402
from contextmri_core.prior.encoders.factory import EncoderConfig, build_encoder  # noqa: E402
from contextmri_core.prior.encoders.fused import FusedEncoder  # noqa: E402
from contextmri_core.prior.encoders.structured import (  # noqa: E402
    ALL_FIELDS, MR_FIELDS, NUMERIC_SCALES, StructuredEncoderConfig, StructuredMetadataEncoder,
    field_dropout_mask, metadata_to_inputs, sinusoidal_features,
)
from tests.prior.tiny_clip import make_tiny_clip  # noqa: E402

FLAIR = ScanMetadata(anatomy="brain", contrast="FLAIR", slice_index=5, sequence="TurboSpinEcho",
                     tr_ms=9000.0, te_ms=86.0, ti_ms=2500.0, flip_angle_deg=150.0,
                     pathology=("White Matter Lesion",))
KNEE = ScanMetadata(anatomy="knee", contrast="PDFS", slice_index=20, sequence="qDESS",
                    tr_ms=20.36, te_ms=5.876, flip_angle_deg=20.0, patient_age_y=48,
                    patient_sex="F", field_strength_t=3.0)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _clip_cfg(clip_dir: Path, **kw) -> ClipEncoderConfig:
    return ClipEncoderConfig(path=str(clip_dir), **kw)


# --- structured -----------------------------------------------------------------------------

def test_structured_shapes_are_fixed():
    enc = StructuredMetadataEncoder()
    assert isinstance(enc, ConditionEncoder)
    for batch in ([FLAIR], [FLAIR, KNEE, None], [None, None]):
        out = enc(batch)
        assert out.shape == (len(batch), len(ALL_FIELDS) + 1, 128)
        assert out.shape[1] == enc.seq_len and out.shape[2] == enc.dim
        assert torch.isfinite(out).all()


def test_missing_fields_use_the_missing_embeddings():
    enc = StructuredMetadataEncoder()
    nan = ScanMetadata(tr_ms=float("nan"), te_ms=-1.0, anatomy="  ", pathology=("",))
    inputs = metadata_to_inputs([None, ScanMetadata(), nan])
    assert not inputs["present"].any()
    tokens = enc.field_tokens(inputs)
    expected = (enc.missing + enc.field_type).expand_as(tokens)
    assert torch.equal(tokens, expected)


def test_known_and_unknown_values():
    cfg = StructuredEncoderConfig()
    meta = ScanMetadata(anatomy="Elbow", sequence="turbo-spin-echo", pathology=("mass", "odd"))
    inputs = metadata_to_inputs([meta, FLAIR], cfg)
    assert inputs["anatomy"][0] == len(cfg.anatomies)  # the "unknown value" row
    assert inputs["sequence"][0] == cfg.sequences.index("TurboSpinEcho")
    hot = inputs["pathology"][0]
    assert hot[cfg.pathologies.index("Mass")] == 1 and hot[-1] == 1 and hot.sum() == 2
    present = dict(zip(cfg.fields, inputs["present"][1].tolist()))
    assert present["te_ms"] and present["pathology"] and not present["patient_age_y"]


def test_drop_equals_unconditional_exactly():
    enc = StructuredMetadataEncoder()
    drop = torch.tensor([True, False, True])
    out = enc([FLAIR, KNEE, KNEE], drop=drop)
    uncond = enc.unconditional(3)
    assert torch.equal(out[drop], uncond[drop])
    assert not torch.allclose(out[1], uncond[1])
    assert torch.equal(enc([None, None]), enc.unconditional(2))


def test_drop_fields_changes_only_the_dropped_tokens():
    enc = StructuredMetadataEncoder()
    inputs = enc.inputs([FLAIR, KNEE])
    drop_fields = torch.zeros(2, len(ALL_FIELDS), dtype=torch.bool)
    drop_fields[0, ALL_FIELDS.index("te_ms")] = True
    drop_fields[1, ALL_FIELDS.index("anatomy")] = True
    before = enc.field_tokens(inputs)
    after = enc.field_tokens(inputs, drop_fields=drop_fields)
    changed = (before != after).any(dim=-1)
    assert torch.equal(changed, drop_fields)
    idx = ALL_FIELDS.index("te_ms")
    assert torch.equal(after[0, idx], enc.missing[idx] + enc.field_type[idx])
    # the LayerNorm acts per token: the output changes at the same positions (+1 for SEP)
    out_changed = (enc.encode_inputs(inputs) != enc.encode_inputs(inputs, None, drop_fields))
    assert torch.equal(out_changed.any(dim=-1)[:, 1:], drop_fields)


def _features(field: str, value: float) -> torch.Tensor:
    enc = StructuredMetadataEncoder()
    u = torch.tensor([NUMERIC_SCALES[field](value)])
    return sinusoidal_features(u, enc.angular_frequencies)[0]


def test_numeric_scaling_separates_mr_parameters():
    te_short = (_features("te_ms", 2.0) - _features("te_ms", 4.0)).norm()
    te_close = (_features("te_ms", 86.0) - _features("te_ms", 87.0)).norm()
    tr_far = (_features("tr_ms", 500.0) - _features("tr_ms", 5000.0)).norm()
    tr_close = (_features("tr_ms", 9000.0) - _features("tr_ms", 9100.0)).norm()
    assert te_short > 5 * te_close
    assert tr_far > 5 * tr_close
    assert te_short > 3.0 and tr_far > 3.0  # features have norm 4 (16 sin/cos pairs)


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="encoder.structured.fields"):
        StructuredEncoderConfig(fields=("anatomy", "colour"))
    with pytest.raises(ConfigError, match="p_drop_mr"):
        StructuredEncoderConfig(p_drop_mr=1.5)
    with pytest.raises(ConfigError, match="encoder.kind"):
        EncoderConfig(kind="t5")
    with pytest.raises(ConfigError, match="encoder.clip"):
        EncoderConfig(kind="fused")
    with pytest.raises(ConfigError, match="encoder.fusion"):
        EncoderConfig(fusion="multiply")


def test_field_subset():
    cfg = StructuredEncoderConfig(fields=("anatomy", "te_ms"), dim=16, hidden=8)
    enc = StructuredMetadataEncoder(cfg)
    assert enc([FLAIR, None]).shape == (2, 3, 16)
    drop, drop_fields = enc.dropout_mask(4, torch.Generator().manual_seed(0))
    assert drop.shape == (4,) and drop_fields.shape == (4, 2)


# --- dropout masks --------------------------------------------------------------------------

def test_field_dropout_mask_is_reproducible_and_has_the_right_rates():
    def draw(seed, batch=20000, p_field=0.1):
        return field_dropout_mask(batch, 0.1, 0.5, p_field, torch.Generator().manual_seed(seed))

    a, b = draw(7), draw(7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], draw(8)[1])
    drop, drop_fields = a
    mr = torch.tensor([f in MR_FIELDS for f in ALL_FIELDS])
    assert abs(drop.float().mean() - 0.1) < 0.01
    assert abs(drop_fields[:, ~mr].float().mean() - 0.1) < 0.01
    assert abs(drop_fields[:, mr].float().mean() - (0.5 + 0.1 - 0.05)) < 0.015
    _, only_mr = draw(3, p_field=0.0)
    assert (only_mr[:, mr] == only_mr[:, mr][:, :1]).all()  # MR parameters dropped together
    assert not only_mr[:, ~mr].any()
    assert abs(only_mr[:, mr][:, 0].float().mean() - 0.5) < 0.015


# --- CLIP -----------------------------------------------------------------------------------

def test_clip_loads_offline_and_encodes(clip_dir, no_network):
    enc = ClipTextEncoder(_clip_cfg(clip_dir))
    assert enc.dim == 32 and enc.seq_len == 77
    out = enc([FLAIR, None, KNEE])
    assert out.shape == (3, 77, 32)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])
    assert torch.equal(out[1], enc.unconditional(1)[0])
    assert torch.allclose(out[1], enc.encode_prompts([""])[0], atol=1e-6)
    dropped = enc([FLAIR, KNEE], drop=torch.tensor([False, True]))
    assert torch.equal(dropped[1], enc.unconditional(1)[0])
    assert torch.allclose(dropped[0], out[0], atol=1e-6)


def test_clip_demographic_prompt(clip_dir):
    enc = ClipTextEncoder(_clip_cfg(clip_dir, demographic=True))
    assert enc.prompts([KNEE])[0].startswith("Qdess, Knee, Slice 20, Age: 48, Sex: F")


def test_clip_is_frozen_and_structured_is_trained(clip_dir):
    enc = build_encoder(EncoderConfig(kind="fused", clip=_clip_cfg(clip_dir)))
    enc.train()
    assert not enc.clip.text_model.training
    assert all(not p.requires_grad for p in enc.clip.text_model.parameters())
    assert not any(k.startswith("clip.") for k in enc.state_dict())
    enc([FLAIR, KNEE]).square().sum().backward()
    assert all(p.grad is None for p in enc.clip.text_model.parameters())
    grads = [p.grad for p in enc.structured.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_missing_or_corrupt_clip_dir_raises_config_error(tmp_path):
    missing = tmp_path / "no_such_clip"
    with pytest.raises(ConfigError, match="no_such_clip"):
        ClipTextEncoder(ClipEncoderConfig(path=str(missing)))
    corrupt = tmp_path / "corrupt_clip"
    for sub in ("text_encoder", "tokenizer"):
        (corrupt / sub).mkdir(parents=True)
        (corrupt / sub / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt_clip"):
        build_encoder(EncoderConfig(kind="clip", clip=ClipEncoderConfig(path=str(corrupt))))


def test_clip_save_pretrained_round_trip(clip_dir, tmp_path):
    enc = ClipTextEncoder(_clip_cfg(clip_dir))
    enc.save_pretrained(tmp_path / "ckpt")
    again = build_encoder(EncoderConfig(kind="clip", clip=ClipEncoderConfig(path=".")),
                          root=tmp_path / "ckpt")
    assert torch.equal(enc([FLAIR, KNEE]), again([FLAIR, KNEE]))


# --- fusion ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fusion,length", [("concat", 77 + len(ALL_FIELDS) + 1), ("add", 77)])
def test_fused_shapes_and_drop(clip_dir, fusion, length):
    enc = build_encoder(EncoderConfig(kind="fused", clip=_clip_cfg(clip_dir), fusion=fusion))
    assert isinstance(enc, FusedEncoder) and enc.seq_len == length and enc.dim == 32
    drop = torch.tensor([False, True, False])
    out = enc([FLAIR, KNEE, None], drop=drop)
    assert out.shape == (3, length, 32)
    uncond = enc.unconditional(3)
    assert torch.equal(out[1], uncond[1]) and torch.equal(out[2], uncond[2])
    assert not torch.allclose(out[0], uncond[0])
    fields = torch.zeros(3, len(ALL_FIELDS), dtype=torch.bool)
    fields[0, ALL_FIELDS.index("te_ms")] = True
    assert not torch.equal(enc([FLAIR] * 3, drop_fields=fields)[0], enc([FLAIR])[0])


# --- configs and rebuilding -----------------------------------------------------------------

def _configs(clip_path: str):
    clip = ClipEncoderConfig(path=clip_path)
    return [
        EncoderConfig(),
        EncoderConfig(structured=StructuredEncoderConfig(dim=64, fields=("anatomy", "te_ms"))),
        EncoderConfig(kind="clip", clip=clip),
        EncoderConfig(kind="fused", clip=clip, fusion="concat"),
        EncoderConfig(kind="fused", clip=clip, fusion="add"),
    ]


def test_encoder_config_round_trips_through_yaml():
    for cfg in _configs("clip"):
        text = yaml.safe_dump(cfg.to_dict())
        assert EncoderConfig.from_dict(yaml.safe_load(text)) == cfg
    assert EncoderConfig.from_dict({}) == EncoderConfig()
    with pytest.raises(ConfigError, match="colour"):
        EncoderConfig.from_dict({"colour": "red"})


def test_build_encoder_rebuilds_identical_encoders(clip_dir):
    rel = clip_dir.name  # resolved against root, like a checkpoint directory
    for cfg in _configs(rel):
        enc = build_encoder(cfg, root=clip_dir.parent)
        again = build_encoder(EncoderConfig.from_dict(enc.config.to_dict()), root=clip_dir.parent)
        assert again.seq_len == enc.seq_len and again.dim == enc.dim
        again.load_state_dict(enc.state_dict())
        enc.eval()
        again.eval()
        batch = [FLAIR, KNEE, None]
        assert torch.equal(enc(batch), again(batch))
        assert torch.equal(enc.unconditional(2), again.unconditional(2))
