"""training.warm_start: a checkpoint whose encoder lacks fields the run asks for loads what
matches (by name and shape, encoder rows by field name) and leaves the rest fresh, logged."""

import logging

import torch

from contextmri_core.io.models.checkpoint import save_prior
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.prior.build import new_prior
from contextmri_core.prior.encoders.factory import EncoderConfig
from contextmri_core.prior.encoders.structured import (ALL_FIELDS, GEOMETRY_FIELDS,
                                                       StructuredEncoderConfig)
from training.warm_start import warm_start

UNET = {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 8, "attention_head_dim": 8,
        "cross_attention_dim": 32, "addition_embed_type_num_heads": 2}
OLD_FIELDS = tuple(f for f in ALL_FIELDS if f not in GEOMETRY_FIELDS)


def structured(dim=32, fields=ALL_FIELDS):
    return EncoderConfig(structured=StructuredEncoderConfig(dim=dim, hidden=32, fields=fields))


def geometry_only(fresh):
    """Every fresh tensor belongs to a geometry field, and each of them has its rows."""
    return (all(any(g in name for g in GEOMETRY_FIELDS) for name in fresh)
            and all(f"encoder.field {g}" in fresh for g in GEOMETRY_FIELDS))


def old_checkpoint(tmp_path):
    torch.manual_seed(0)
    old = new_prior("contextmri-small", structured(fields=OLD_FIELDS), image_size=(32, 32), **UNET)
    return old, save_prior(old, tmp_path / "old")


def test_new_encoder_fields_start_fresh_and_everything_else_is_kept(tmp_path, caplog):
    old, path = old_checkpoint(tmp_path)
    with caplog.at_level(logging.INFO):
        prior, fresh = warm_start(str(path), structured(), image_size=(48, 48))
    assert geometry_only(fresh)
    assert any("slice_plane" in m and "fresh" in m for m in caplog.messages)
    for name, value in old.unet.state_dict().items():
        assert torch.equal(prior.unet.state_dict()[name], value), name
    new_enc, old_enc = prior.encoder, old.encoder
    for i, field in enumerate(new_enc.structured_config.fields):
        if field in OLD_FIELDS:
            j = OLD_FIELDS.index(field)
            assert torch.equal(new_enc.missing[i], old_enc.missing[j])
            assert torch.equal(new_enc.field_type[i], old_enc.field_type[j])
    assert torch.equal(new_enc.tables["contrast"].weight, old_enc.tables["contrast"].weight)
    assert torch.equal(new_enc.mlps["te_ms"][0].weight, old_enc.mlps["te_ms"][0].weight)
    assert "slice_plane" in new_enc.tables and "pixel_spacing_mm" in new_enc.mlps
    assert prior.normalisation.image_size == (48, 48)


def test_a_wider_token_keeps_the_unet_except_its_condition_projection(tmp_path):
    old, path = old_checkpoint(tmp_path)
    prior, fresh = warm_start(str(path), structured(dim=64))
    unet_fresh = [f for f in fresh if f.startswith("unet.")]
    assert "encoder.tables.contrast.weight" in fresh  # a new width: the encoder starts afresh
    assert unet_fresh and all(f.startswith(("unet.encoder_hid_proj", "unet.add_embedding"))
                              for f in unet_fresh)  # the layers that read the tokens
    assert torch.equal(prior.unet.state_dict()["conv_in.weight"], old.unet.state_dict()["conv_in.weight"])
    assert prior.encoder.dim == 64


def test_same_encoder_or_none_loads_the_checkpoint_as_it_is(tmp_path):
    old, path = old_checkpoint(tmp_path)
    for enc in (None, structured(fields=OLD_FIELDS)):
        prior, fresh = warm_start(str(path), enc)
        assert fresh == []
        assert torch.equal(prior.encoder.missing, old.encoder.missing)


def test_the_shipped_default_model_has_the_geometry_tokens_and_warm_starts_whole():
    """The shipped model was trained with the geometry fields: a warm start with today's
    structured encoder keeps every tensor (nothing fresh)."""
    prior, fresh = warm_start(str(DEFAULT_MODEL_DIR), EncoderConfig(kind="structured"), (96, 96))
    assert fresh == []
    assert prior.encoder.structured_config.fields[-3:] == GEOMETRY_FIELDS
