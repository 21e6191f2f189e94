"""The published ContextMRI prompt vocabulary (``data.published``), against the release's own
prompt examples and rows of its validation CSVs (github DoHunLee1/ContextMRI, ``assets/``);
knee anatomy and contrast from fastMRI knee headers; which published UNet a scan needs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from contextmri_core.data.header import parse_header
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.published import (choose_unet, is_qdess, pathology_counts,
                                            published_prompt, text_prompt)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fastmri_brain_axflair_header.xml"


def brain(contrast, slice_index, sequence, tr, te, ti, fa, pathology=()):
    return ScanMetadata(anatomy="brain", contrast=contrast, slice_index=slice_index,
                        sequence=sequence, tr_ms=tr, te_ms=te, ti_ms=ti, flip_angle_deg=fa,
                        pathology=tuple(pathology))


KNEE_PDFS = ScanMetadata(anatomy="knee", contrast="PDFS", slice_index=20,
                         sequence="TurboSpinEcho", tr_ms=3120.0, te_ms=33.0, ti_ms=100.0,
                         flip_angle_deg=140.0)
QDESS = ScanMetadata(anatomy="knee", slice_index=46, sequence="qDESS", tr_ms=20.36,
                     te_ms=6.428, flip_angle_deg=20.0, patient_age_y=48, patient_sex="F",
                     te_all_ms=(6.428, 35.5))

# One row per contrast string of the published fastMRI CSVs, with the prompt it gives.
FASTMRI_TABLE = [
    (brain("T1", 8, "TurboSpinEcho", 446.0, 9.0, 100.0, 140.0),  # assets/.../prompt.txt
     "brain, Slice 8, T1, Sequence: TurboSpinEcho, TR: 446, TE: 9, TI: 100, Flip angle: 140"),
    (brain("T1PRE", 0, "Flash", 250.0, 2.0, 300.0, 70.0),
     "brain, Slice 0, T1 pre-contrast, Sequence: Flash, TR: 250, TE: 2, TI: 300, Flip angle: 70"),
    (brain("T1POST", 0, "TurboSpinEcho", 419.0, 9.0, 100.0, 140.0),
     "brain, Slice 0, T1 post-contrast, Sequence: TurboSpinEcho, TR: 419, TE: 9, TI: 100, "
     "Flip angle: 140"),
    (brain("T2", 0, "TurboSpinEcho", 6190.0, 113.0, 100.0, 174.0),
     "brain, Slice 0, T2, Sequence: TurboSpinEcho, TR: 6190, TE: 113, TI: 100, Flip angle: 174"),
    (brain("FLAIR", 0, "TurboSpinEcho", 9000.0, 81.0, 2500.0, 150.0, ["Normal for age"]),
     "brain, Slice 0, FLAIR, Pathology: 1 Normal for age, Sequence: TurboSpinEcho, TR: 9000, "
     "TE: 81, TI: 2500, Flip angle: 150"),
    (dataclasses.replace(KNEE_PDFS, contrast="PD", slice_index=0, tr_ms=2750.0, te_ms=27.0),
     "knee, Slice 0, PD, Sequence: TurboSpinEcho, TR: 2750, TE: 27, TI: 100, Flip angle: 140"),
    (KNEE_PDFS,  # assets/fastmri/knee/file1001429/meta/prompt.txt
     "knee, Slice 20, PDFS, Sequence: TurboSpinEcho, TR: 3120, TE: 33, TI: 100, Flip angle: 140"),
]


@pytest.mark.parametrize("meta, expected", FASTMRI_TABLE,
                         ids=["T1", "T1 pre", "T1 post", "T2", "FLAIR", "knee PD", "knee PDFS"])
def test_fastmri_prompts_match_the_published_rows(meta, expected):
    assert published_prompt(meta, "fastmri") == expected
    assert text_prompt(meta, "published") == expected


def test_the_skm_tea_prompt_matches_the_published_example():
    # assets/skm-tea/MTR-228/meta/prompt.txt; TE is the first echo, no contrast, no TI
    expected = "Qdess, Knee, Slice 46, Age: 48, Sex: F, TR: 20.36, TE: 6.428, Flip Angle: 20"
    assert published_prompt(QDESS, "skm-tea") == expected
    assert text_prompt(QDESS, "published", demographic=True) == expected
    assert published_prompt(dataclasses.replace(QDESS, tr_ms=18.352, te_ms=5.876)).startswith(
        "knee, Slice 46")  # the fastMRI form is another vocabulary
    assert published_prompt(dataclasses.replace(QDESS, tr_ms=18.352, te_ms=5.876), "skm-tea") \
        .endswith("TR: 18.352, TE: 5.876, Flip Angle: 20")


def test_pathology_is_counted_in_order_of_first_appearance():
    findings = ("Craniotomy", "Posttreatment change", "Craniotomy", "Craniotomy")
    assert pathology_counts(findings) == "3 Craniotomy, 1 Posttreatment change"
    meta = brain("T1POST", 3, "TurboSpinEcho", 419.0, 9.0, 100.0, 140.0, findings)
    assert published_prompt(meta) == (
        "brain, Slice 3, T1 post-contrast, Pathology: 3 Craniotomy, 1 Posttreatment change, "
        "Sequence: TurboSpinEcho, TR: 419, TE: 9, TI: 100, Flip angle: 140")
    assert pathology_counts(("", " ")) is None
    skm = dataclasses.replace(QDESS, pathology=("Effusion", "Cartilage Lesion", "Cartilage Lesion"))
    assert published_prompt(skm, "skm-tea") == (
        "Qdess, Knee, Slice 46, Age: 48, Sex: F, Pathology: 1 Effusion, 2 Cartilage Lesion, "
        "TR: 20.36, TE: 6.428, Flip Angle: 20")


def test_integers_as_the_csvs_hold_them_and_the_mr_block_is_all_or_nothing():
    meta = brain("T2", 4, "TurboSpinEcho", 6190.4, 112.5, 100.0, 174.0)
    assert published_prompt(meta).endswith("TR: 6190, TE: 113, TI: 100, Flip angle: 174")
    assert "." not in published_prompt(meta)
    # training dropped the block whole; a block with a hole never occurred: leave it out whole
    for field in ("sequence", "tr_ms", "te_ms", "ti_ms", "flip_angle_deg"):
        assert published_prompt(dataclasses.replace(meta, **{field: None})) == "brain, Slice 4, T2"
    assert published_prompt(dataclasses.replace(QDESS, te_ms=None), "skm-tea") == \
        "Qdess, Knee, Slice 46, Age: 48, Sex: F"
    assert published_prompt(ScanMetadata()) == ""


def test_nothing_outside_the_published_vocabulary_enters_the_prompt():
    meta = dataclasses.replace(KNEE_PDFS, field_strength_t=3.0, vendor="SIEMENS", model="Skyra",
                               patient_age_y=51, patient_sex="M", protocol_name="CORPDFS_FBK",
                               slice_plane="coronal", pixel_spacing_mm=0.5,
                               slice_thickness_mm=3.0)  # geometry: for our encoder, never here
    assert published_prompt(meta) == FASTMRI_TABLE[-1][1]
    skm = dataclasses.replace(QDESS, slice_plane="sagittal", pixel_spacing_mm=0.3125,
                              slice_thickness_mm=1.6, field_strength_t=3.0)
    assert published_prompt(skm, "skm-tea") == published_prompt(QDESS, "skm-tea")
    for contrast in ("T1", "T1PRE", "T1POST", "T2", "FLAIR", "PD", "PDFS"):
        text = published_prompt(dataclasses.replace(meta, contrast=contrast))
        shown = text.split(", ")[2]
        assert shown in ("T1", "T1 pre-contrast", "T1 post-contrast", "T2", "FLAIR", "PD", "PDFS")


def _knee_header(protocol: str) -> str:
    """The fixture's fastMRI header turned into a fastMRI knee one (protocol, MR values, coils
    that name no body part)."""
    xml = FIXTURE.read_text()
    xml = xml.replace("AX FLAIR_FBB", protocol).replace("HeadNeck_20", "Channel")
    for tag, value in (("TR", "3120"), ("TE", "33"), ("TI", "100"), ("flipAngle_deg", "140")):
        xml = re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", xml, count=1)
    return xml


@pytest.mark.parametrize("protocol, contrast", [("CORPDFS_FBK", "PDFS"), ("CORPD_FBK", "PD")])
def test_knee_is_recognised_from_fastmri_knee_headers(protocol, contrast):
    meta = parse_header(_knee_header(protocol), filename="file1001429.h5").for_slice(20)
    assert (meta.anatomy, meta.contrast) == ("knee", contrast)
    expected = (f"knee, Slice 20, {contrast}, Sequence: TurboSpinEcho, TR: 3120, TE: 33, "
                f"TI: 100, Flip angle: 140")
    assert published_prompt(meta) == expected
    # the fastMRI ``acquisition`` attribute alone is enough (protocol name unknown)
    bare = _knee_header(protocol).replace(f"<protocolName>{protocol}</protocolName>", "")
    meta = parse_header(bare, acquisition=protocol, filename="file1001429.h5")
    assert (meta.anatomy, meta.contrast) == ("knee", contrast)


def test_the_brain_fixture_gives_the_published_flair_prompt():
    meta = parse_header(FIXTURE.read_text(), acquisition="AXFLAIR",
                        filename="file_brain_AXFLAIR_200_6002447.h5").for_slice(3)
    assert published_prompt(meta) == ("brain, Slice 3, FLAIR, Sequence: TurboSpinEcho, "
                                      "TR: 9000, TE: 86, TI: 2500, Flip angle: 150")


def test_qdess_scans_go_to_the_skm_tea_unet_and_the_rest_to_fastmri():
    both = ("fastmri", "skm-tea")
    assert is_qdess(QDESS) and choose_unet(QDESS, both) == "skm-tea"
    sag = ScanMetadata(anatomy="knee", series_description="Sag DESS Low 3132")
    assert choose_unet(sag, both) == "skm-tea"
    assert choose_unet(ScanMetadata(sequence="mfastDessMaps"), both) == "skm-tea"
    assert choose_unet(KNEE_PDFS, both) == "fastmri"
    assert choose_unet(FASTMRI_TABLE[0][0], both) == "fastmri" and choose_unet(None, both) == "fastmri"
    assert choose_unet(QDESS, ("fastmri",)) == "fastmri"  # what there is, with a warning
    assert choose_unet(KNEE_PDFS, ("unet",)) == "unet"
