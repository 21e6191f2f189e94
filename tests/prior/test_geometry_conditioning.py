"""Geometry-aware conditioning: slice plane, pixel spacing and slice thickness as structured
encoder tokens; checkpoints trained before these fields existed keep working and warm-start."""

from __future__ import annotations

import dataclasses

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.io.models.checkpoint import load_prior, save_prior
from contextmri_core.prior.build import new_prior
from contextmri_core.prior.encoders.factory import EncoderConfig
from contextmri_core.prior.encoders.structured import (
    ALL_FIELDS, GEOMETRY_FIELDS, StructuredEncoderConfig, StructuredMetadataEncoder,
    metadata_to_inputs,
)

BASE = ScanMetadata(anatomy="brain", contrast="T1", slice_plane="coronal", pixel_spacing_mm=0.9,
                    slice_thickness_mm=3.0)


def encoder(seed: int = 0, **kw) -> StructuredMetadataEncoder:
    torch.manual_seed(seed)
    return StructuredMetadataEncoder(StructuredEncoderConfig(**kw)).eval()


def test_geometry_fields_come_last_in_token_order():
    assert ALL_FIELDS[-3:] == GEOMETRY_FIELDS
    assert encoder().seq_len == 1 + len(ALL_FIELDS)


def test_inputs_of_the_geometry_fields():
    inp = metadata_to_inputs([BASE, ScanMetadata(slice_plane="sagittal"), None])
    cfg = StructuredEncoderConfig()
    assert inp["slice_plane"].tolist() == [cfg.planes.index("coronal"),
                                           cfg.planes.index("sagittal"), 0]
    assert inp["pixel_spacing_mm"][0].item() == torch.tensor(0.9 / 4).item()
    col = {f: i for i, f in enumerate(cfg.fields)}
    present = inp["present"]
    assert present[0, col["pixel_spacing_mm"]] and not present[1, col["pixel_spacing_mm"]]
    assert present[1, col["slice_plane"]] and not present[2].any()


def _token(enc, meta, field):
    return enc(meta)[:, 1 + enc.structured_config.fields.index(field)]


def test_each_geometry_value_changes_only_its_own_token():
    enc = encoder()
    for field, other in (("slice_plane", "axial"), ("pixel_spacing_mm", 1.2),
                         ("slice_thickness_mm", 5.0)):
        a = enc.field_tokens(enc.inputs([BASE]))
        b = enc.field_tokens(enc.inputs([dataclasses.replace(BASE, **{field: other})]))
        changed = (a - b).abs().amax(dim=-1)[0] > 1e-6
        assert changed.tolist() == [f == field for f in enc.structured_config.fields], field


def test_spacings_a_fifth_apart_get_distinct_embeddings():
    enc = encoder()
    tok = [_token(enc, [dataclasses.replace(BASE, pixel_spacing_mm=s)], "pixel_spacing_mm")
           for s in (0.8, 1.0, 1.2)]
    missing = _token(enc, [dataclasses.replace(BASE, pixel_spacing_mm=None)], "pixel_spacing_mm")
    assert min((tok[0] - tok[1]).norm(), (tok[1] - tok[2]).norm()) > 0.05
    assert all((t - missing).norm() > 0.05 for t in tok)


OLD_FIELDS = tuple(f for f in ALL_FIELDS if f not in GEOMETRY_FIELDS)


def test_a_checkpoint_without_geometry_fields_still_loads_and_ignores_them(tmp_path):
    enc = EncoderConfig(kind="structured", structured=StructuredEncoderConfig(fields=OLD_FIELDS))
    torch.manual_seed(0)
    save_prior(new_prior("contextmri-small", enc, image_size=(32, 32),
                         block_out_channels=[32, 32, 32, 32]), tmp_path / "old")
    prior = load_prior(tmp_path / "old").eval()
    assert prior.encoder.structured_config.fields == OLD_FIELDS
    with torch.no_grad():
        a = prior.encode([BASE])
        b = prior.encode([dataclasses.replace(BASE, slice_plane="axial", pixel_spacing_mm=2.0)])
    assert torch.equal(a, b)


def test_adopt_from_an_encoder_without_geometry_keeps_what_it_learned():
    old_fields = OLD_FIELDS
    old, new = encoder(1, fields=old_fields), encoder(2)
    fresh = new.adopt_from(old)
    assert fresh == GEOMETRY_FIELDS
    metas = [dataclasses.replace(BASE, slice_plane=None, pixel_spacing_mm=None,
                                 slice_thickness_mm=None), None]
    n_old = len(old_fields)
    with torch.no_grad():
        t_old = old.field_tokens(old.inputs(metas))
        t_new = new.field_tokens(new.inputs(metas))
    assert torch.allclose(t_new[:, :n_old], t_old, atol=1e-6)
    # fresh geometry rows were not touched
    assert not torch.allclose(new.missing[n_old:], old.missing[:3])
