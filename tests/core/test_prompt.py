"""ScanMetadata -> ContextMRI text prompt."""

from __future__ import annotations

import dataclasses

import pytest

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt, format_compact, format_integer

BRAIN = ScanMetadata(
    anatomy="brain", contrast="FLAIR", slice_index=5, sequence="TurboSpinEcho",
    tr_ms=9000.0, te_ms=86.0, ti_ms=2500.0, flip_angle_deg=150.0,
)
KNEE = ScanMetadata(
    anatomy="knee", contrast="PDFS", slice_index=20, sequence="TurboSpinEcho",
    tr_ms=3120.0, te_ms=33.0, ti_ms=100.0, flip_angle_deg=140.0,
)
SKMTEA = ScanMetadata(
    anatomy="knee", slice_index=46, sequence="qDESS", tr_ms=20.36, te_ms=5.876,
    flip_angle_deg=20.0, patient_age_y=48, patient_sex="F",
)


def drop(meta: ScanMetadata, **changes) -> ScanMetadata:
    """``meta`` with some fields replaced (usually by None)."""
    return dataclasses.replace(meta, **changes)


@pytest.mark.parametrize(
    "meta, expected",
    [
        (BRAIN, "brain, Slice 5, FLAIR, Sequence: TurboSpinEcho, TR: 9000, TE: 86, TI: 2500, "
                "Flip angle: 150"),
        (KNEE, "knee, Slice 20, PDFS, Sequence: TurboSpinEcho, TR: 3120, TE: 33, TI: 100, "
               "Flip angle: 140"),
        (drop(KNEE, pathology=("Meniscus Tear", "Bone- Subchondral edema")),
         "knee, Slice 20, PDFS, Pathology: Meniscus Tear, Bone- Subchondral edema, "
         "Sequence: TurboSpinEcho, TR: 3120, TE: 33, TI: 100, Flip angle: 140"),
        (drop(KNEE, pathology=("", "  ")),
         "knee, Slice 20, PDFS, Sequence: TurboSpinEcho, TR: 3120, TE: 33, TI: 100, "
         "Flip angle: 140"),  # blank findings are no pathology
        # missing fields vanish with their label and comma
        (drop(BRAIN, ti_ms=None), "brain, Slice 5, FLAIR, Sequence: TurboSpinEcho, TR: 9000, "
                                  "TE: 86, Flip angle: 150"),
        (drop(BRAIN, anatomy=None), "Slice 5, FLAIR, Sequence: TurboSpinEcho, TR: 9000, TE: 86, "
                                    "TI: 2500, Flip angle: 150"),
        (drop(BRAIN, contrast=None, sequence=None),
         "brain, Slice 5, TR: 9000, TE: 86, TI: 2500, Flip angle: 150"),
        (drop(BRAIN, tr_ms=None, te_ms=None, ti_ms=None, flip_angle_deg=None),
         "brain, Slice 5, FLAIR, Sequence: TurboSpinEcho"),
        (drop(BRAIN, slice_index=None), "brain, FLAIR, Sequence: TurboSpinEcho, TR: 9000, "
                                        "TE: 86, TI: 2500, Flip angle: 150"),
        (drop(BRAIN, slice_index=0, anatomy=None, contrast=None, sequence=None, tr_ms=None,
              te_ms=None, ti_ms=None, flip_angle_deg=None), "Slice 0"),
        (ScanMetadata(te_ms=4.5), "TE: 5"),  # round half up, not to even
        (ScanMetadata(tr_ms=2.5, te_ms=3.5, ti_ms=0.0, flip_angle_deg=89.49),
         "TR: 3, TE: 4, TI: 0, Flip angle: 89"),
        # demographic fields are not part of the fastMRI prompt
        (ScanMetadata(patient_age_y=40, patient_sex="M", field_strength_t=3.0), ""),
        (ScanMetadata(), ""),
    ],
)
def test_fastmri_prompt(meta, expected):
    prompt = build_prompt(meta)
    assert prompt == expected
    assert "None" not in prompt and ", ," not in prompt


@pytest.mark.parametrize(
    "meta, expected",
    [
        (SKMTEA, "Qdess, Knee, Slice 46, Age: 48, Sex: F, TR: 20.36, TE: 5.876, Flip Angle: 20"),
        (drop(SKMTEA, pathology=("Cartilage Lesion", "Meniscal Tear"), tr_ms=18.352),
         "Qdess, Knee, Slice 46, Age: 48, Sex: F, Pathology: Cartilage Lesion, Meniscal Tear, "
         "TR: 18.352, TE: 5.876, Flip Angle: 20"),
        # contrast and TI are not part of the SKM-TEA prompt
        (drop(SKMTEA, contrast="T2", ti_ms=100.0),
         "Qdess, Knee, Slice 46, Age: 48, Sex: F, TR: 20.36, TE: 5.876, Flip Angle: 20"),
        (drop(SKMTEA, patient_age_y=None, patient_sex=None, sequence=None),
         "Knee, Slice 46, TR: 20.36, TE: 5.876, Flip Angle: 20"),
        (drop(SKMTEA, te_ms=5.87649, tr_ms=20.0005),
         "Qdess, Knee, Slice 46, Age: 48, Sex: F, TR: 20.001, TE: 5.876, Flip Angle: 20"),
        (ScanMetadata(), ""),
    ],
)
def test_demographic_prompt(meta, expected):
    assert build_prompt(meta, demographic=True) == expected


@pytest.mark.parametrize(
    "value, integer, compact",
    [
        (9000.0, "9000", "9000"),
        (86.5, "87", "86.5"),  # built-in round() would give 86
        (85.5, "86", "85.5"),
        (2.675, "3", "2.675"),
        (2.6755, "3", "2.676"),  # 2.6755 is stored just below ...55; decimal text rounds up
        (0.49999999999999994, "0", "0.5"),
        (20.0, "20", "20"),
        (5.8760, "6", "5.876"),
        (-0.0004, "0", "0"),  # never "-0"
        (1e-7, "0", "0"),
    ],
)
def test_number_formats(value, integer, compact):
    assert format_integer(value) == integer
    assert format_compact(value) == compact


def test_non_finite_parameters_are_left_out():
    assert build_prompt(ScanMetadata(tr_ms=float("nan"), te_ms=float("inf"), ti_ms=10.0)) == (
        "TI: 10"
    )
