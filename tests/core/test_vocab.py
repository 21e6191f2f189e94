"""Vendor/protocol text -> contrast and anatomy vocabulary."""

from __future__ import annotations

import pytest

from contextmri_core.data.metadata import CONTRASTS
from contextmri_core.data.vocab import derive_anatomy, fastmri_name_parts, map_contrast


@pytest.mark.parametrize(
    "text, expected",
    [
        # fastMRI acquisition attributes
        ("AXFLAIR", "FLAIR"),
        ("AXT1POST", "T1POST"),
        ("AXT1PRE", "T1PRE"),
        ("AXT1", "T1"),
        ("AXT2", "T2"),
        ("CORPDFS_FBK", "PDFS"),
        ("CORPD_FBK", "PD"),
        # protocol names / series descriptions
        ("AX T2", "T2"),
        ("AX FLAIR_FBB", "FLAIR"),
        ("T2 FLAIR", "FLAIR"),  # FLAIR beats T2
        ("t2_tirm_tra_dark-fluid", "FLAIR"),
        ("T1 POST GAD", "T1POST"),
        ("T1+C", "T1POST"),
        ("Sag T1 +C", "T1POST"),
        ("T1 FS POST", "T1POST"),
        ("T1 PRE CONTRAST", "T1PRE"),  # "contrast" must not make it T1POST
        ("AX T1 PRE", "T1PRE"),
        ("T1_MPRAGE", "T1"),
        ("t1_mprage_sag", "T1"),
        ("MPRAGE", "T1"),
        ("t1_se", "T1"),
        ("3DT1", "T1"),
        ("SAG T1 FLAIR", "T1"),  # T1-FLAIR is T1-weighted
        ("t2_tse_tra", "T2"),
        ("AX T2 FS", "T2"),
        ("PD FS", "PDFS"),
        ("pd_fs", "PDFS"),
        ("PD_SPAIR", "PDFS"),
        ("COR PDW FS", "PDFS"),
        ("PD", "PD"),
        ("PD FSE", "PD"),  # fast spin echo is not fat suppression
        ("sag pd tse", "PD"),
        # unknown -> None
        ("t2*_gre", None),
        ("T2 STAR", None),
        ("localizer", None),
        ("DWI", None),
        ("T12 level", None),
        ("UPDATE", None),
        ("", None),
        ("   ", None),
    ],
)
def test_map_contrast_single_text(text, expected):
    assert map_contrast(text) == expected


def test_map_contrast_results_are_in_the_vocabulary():
    texts = ["AXFLAIR", "AXT1POST", "AXT1PRE", "AXT1", "AXT2", "CORPDFS_FBK", "CORPD_FBK"]
    assert sorted(map_contrast(t) for t in texts) == sorted(CONTRASTS)


@pytest.mark.parametrize(
    "texts, expected",
    [
        (("AXFLAIR", "AX T2"), "FLAIR"),  # first text that maps wins
        (("AX T2", "AXFLAIR"), "T2"),
        ((None, "localizer", "CORPDFS_FBK"), "PDFS"),  # skips None and unmapped text
        ((None, "", "localizer"), None),
        ((), None),
    ],
)
def test_map_contrast_first_mapping_text_wins(texts, expected):
    assert map_contrast(*texts) == expected


@pytest.mark.parametrize(
    "override, descriptions, coils, filename, expected",
    [
        # override wins over everything, normalised to lower case
        (" Knee ", ("MRI BRAIN",), ("Head_32",), "file_brain_AXT2_1.h5", "knee"),
        # descriptions, in the order given
        (None, ("MRI BRAIN W/WO", None, None), (), None, "brain"),
        (None, (None, "HEAD routine", None), (), None, "brain"),
        (None, ("NEURO^Routine",), (), None, "brain"),
        (None, ("", "KNEE_RIGHT"), ("Head_32",), None, "knee"),  # descriptions beat coils
        (None, ("localizer", "t2_prostate_tra"), (), None, "prostate"),
        (None, ("L-SPINE",), (), None, "spine"),
        (None, ("LUMBAR ROUTINE",), (), None, "spine"),
        (None, ("ABDOMEN^LIVER",), (), None, "abdomen"),
        (None, ("CARDIAC^Function",), (), None, "cardiac"),
        (None, ("AHEAD OF TIME",), (), None, None),  # "HEAD" only at a word start
        # coil names
        (None, ("AX FLAIR_FBB",), ("HeadNeck_20:1:H13", "HeadNeck_20:1:H14"), None, "brain"),
        (None, (), ("Head_32:1:H1",), None, "brain"),
        (None, (), ("8HRBRAIN",), None, "brain"),
        (None, (), ("Knee",), None, "knee"),
        (None, (), ("Body_18:1:B1", "Knee_15:1:K1", "Knee_15:1:K2"), None, "knee"),
        (None, (), ("Spine_32:1:S1", "Body_18"), None, None),  # non-specific arrays
        # fastMRI file name
        (None, (), ("Body_18",), "/data/file_brain_AXFLAIR_200_6002462.h5", "brain"),
        (None, (), (), "file_knee_CORPD_FBK_100.h5", "knee"),
        (None, (), (), "file1000001.h5", None),  # fastMRI knee v1 names carry no anatomy
        (None, (), (), "file_foo_AXT2_1.h5", None),
        # nothing
        (None, (), (), None, None),
        ("  ", (None,), (None,), "", None),
    ],
)
def test_derive_anatomy(override, descriptions, coils, filename, expected):
    assert derive_anatomy(override, descriptions, coils, filename) == expected


@pytest.mark.parametrize(
    "filename, expected",
    [
        ("file_brain_AXFLAIR_200_6002462.h5", ("brain", "AXFLAIR")),
        ("/x/y/file_brain_AXT1POST_201_6002780.h5", ("brain", "AXT1POST")),
        ("file_prostate_AXT2_0001.h5", ("prostate", "AXT2")),
        ("file1000001.h5", (None, None)),
        (None, (None, None)),
    ],
)
def test_fastmri_name_parts(filename, expected):
    assert fastmri_name_parts(filename) == expected
