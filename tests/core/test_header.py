"""ISMRMRD XML header -> ScanMetadata."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Optional

import pytest

from contextmri_core.data.header import age_in_years, parse_header
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt
from contextmri_core.errors import HeaderError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NS = 'xmlns="http://www.ismrm.org/ISMRMRD"'


def header(body: str, namespaced: bool = True) -> str:
    """A minimal ISMRMRD header around ``body`` (experimentalConditions + encoding added)."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader {NS if namespaced else ""}>
  {body}
  <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>
  </experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>256</x><y>256</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>128</x><y>128</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></reconSpace>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def subject(
    birthdate: Optional[str] = None, gender: Optional[str] = None, study_date: Optional[str] = None
) -> str:
    parts = []
    if birthdate is not None or gender is not None:
        parts.append("<subjectInformation>")
        if birthdate is not None:
            parts.append(f"<patientBirthdate>{birthdate}</patientBirthdate>")
        if gender is not None:
            parts.append(f"<patientGender>{gender}</patientGender>")
        parts.append("</subjectInformation>")
    if study_date is not None:
        parts.append(f"<studyInformation><studyDate>{study_date}</studyDate></studyInformation>")
    return "".join(parts)


KNEE_BODY = """
  <studyInformation><studyDescription>KNEE^RIGHT</studyDescription></studyInformation>
  <measurementInformation>
    <protocolName>CORPDFS_FBK</protocolName>
    <seriesDescription>COR PD FS</seriesDescription>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor><systemModel>Skyra</systemModel>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T>
  </acquisitionSystemInformation>
  <sequenceParameters>
    <TR>3120</TR><TR>2800.5</TR><TE>33</TE><TE>66</TE><TI>100</TI>
    <flipAngle_deg>140</flipAngle_deg><sequence_type>TurboSpinEcho</sequence_type>
  </sequenceParameters>"""


# --- the real-layout fastMRI fixture (tests/fixtures) -------------------------------------------------

def test_fastmri_brain_fixture():
    meta = parse_header((FIXTURES / "fastmri_brain_axflair_header.xml").read_text())
    assert (meta.anatomy, meta.contrast, meta.sequence) == ("brain", "FLAIR", "TurboSpinEcho")
    assert (meta.tr_ms, meta.te_ms, meta.ti_ms, meta.flip_angle_deg) == (9000, 86, 2500, 150)
    assert meta.tr_all_ms == (9000.0,) and meta.flip_angle_all_deg == (150.0,)
    assert meta.field_strength_t == pytest.approx(1.494)
    assert (meta.vendor, meta.model) == ("SIEMENS", "Aera")
    assert meta.patient_age_y is None and meta.patient_sex is None
    assert meta.protocol_name == "AX FLAIR_FBB" and meta.series_description is None
    assert meta.slice_index is None and meta.pathology == ()
    assert build_prompt(meta.for_slice(5)) == (
        "brain, Slice 5, FLAIR, Sequence: TurboSpinEcho, TR: 9000, TE: 86, TI: 2500, "
        "Flip angle: 150"
    )


def test_fastmri_fixture_as_bytes_with_acquisition_attribute():
    xml = (FIXTURES / "fastmri_brain_axflair_header.xml").read_bytes()
    # the fastMRI "acquisition" attribute is consulted before the protocol name
    meta = parse_header(xml, acquisition=b"AXT1POST", filename="file_brain_AXT1POST_1_2.h5")
    assert (meta.anatomy, meta.contrast) == ("brain", "T1POST")


# --- inline headers --------------------------------------------------------------------------

@pytest.mark.parametrize("namespaced", [True, False])
def test_knee_header_with_multiple_values(namespaced):
    meta = parse_header(header(KNEE_BODY, namespaced=namespaced))
    assert meta.anatomy == "knee" and meta.contrast == "PDFS"
    assert meta.tr_ms == 3120.0 and meta.tr_all_ms == (3120.0, 2800.5)
    assert meta.te_ms == 33.0 and meta.te_all_ms == (33.0, 66.0)
    assert meta.ti_all_ms == (100.0,) and meta.flip_angle_deg == 140.0
    assert (meta.vendor, meta.model, meta.field_strength_t) == ("SIEMENS", "Skyra", 2.89362)
    assert meta.series_description == "COR PD FS"


@pytest.mark.parametrize(
    "birthdate, study_date, expected_age",
    [
        ("1970-05-12", "2020-05-11", 49),  # day before the birthday
        ("1970-05-12", "2020-05-12", 50),  # on the birthday
        ("1970-05-12", "2020-05-13", 50),
        ("1970-12-31", "2021-01-01", 50),  # year boundary
        ("2000-02-29", "2021-02-28", 20),  # leap-day birthday, non-leap year
        ("2000-02-29", "2021-03-01", 21),
        ("1980-06-01Z", "2020-06-01+02:00", 40),  # xs:date time zones are allowed
        ("2020-01-01", "2020-01-01", 0),
        ("2021-01-01", "2020-01-01", None),  # study before birth
        ("1970-05-12", None, None),
        (None, "2020-05-11", None),
        ("12.05.1970", "2020-05-11", None),  # not xs:date
        ("1970-13-40", "2020-05-11", None),  # no such date
    ],
)
def test_age_from_birthdate_and_study_date(birthdate, study_date, expected_age):
    meta = parse_header(header(subject(birthdate=birthdate, study_date=study_date)))
    assert meta.patient_age_y == expected_age


@pytest.mark.parametrize(
    "gender, expected", [("M", "M"), ("F", "F"), ("O", "O"), ("f", "F"), ("X", None), ("", None)]
)
def test_patient_sex(gender, expected):
    meta = parse_header(header(subject(gender=gender)))
    assert meta.patient_sex == expected


def test_age_in_years_is_whole_years():
    assert age_in_years(date(1990, 7, 15), date(2024, 7, 14)) == 33
    assert age_in_years(date(1990, 7, 15), date(2024, 7, 15)) == 34
    assert age_in_years(None, date(2024, 7, 15)) is None


def test_shepp_logan_like_header_without_sequence_parameters_is_all_none():
    meta = parse_header(header(""))
    # only the grid is known: 256 mm / 128 pixels, 5 mm slices (geometry never enters the prompt)
    assert meta == ScanMetadata(pixel_spacing_mm=2.0, slice_thickness_mm=5.0)
    assert build_prompt(meta) == ""


def test_missing_and_unusable_values_are_none_not_zero():
    body = """
      <acquisitionSystemInformation><systemFieldStrength_T>0</systemFieldStrength_T>
        <systemVendor>  </systemVendor></acquisitionSystemInformation>
      <sequenceParameters><TR>abc</TR><TR>NaN</TR><TE>4.5</TE>
        <sequence_type></sequence_type></sequenceParameters>"""
    meta = parse_header(header(body))
    assert meta.tr_ms is None and meta.tr_all_ms == ()
    assert meta.te_ms == 4.5 and meta.ti_ms is None and meta.flip_angle_deg is None
    assert meta.sequence is None and meta.vendor is None and meta.model is None
    assert meta.field_strength_t is None
    assert meta.contrast is None and meta.anatomy is None


@pytest.mark.parametrize(
    "kwargs, expected_anatomy",
    [
        (dict(anatomy_override="Prostate"), "prostate"),
        (dict(filename="file_brain_AXT2_200_1.h5"), "knee"),  # description beats file name
    ],
)
def test_anatomy_sources(kwargs, expected_anatomy):
    assert parse_header(header(KNEE_BODY), **kwargs).anatomy == expected_anatomy


def test_contrast_and_anatomy_from_fastmri_filename_only():
    meta = parse_header(header(""), filename="/data/file_brain_AXT1PRE_200_6002462.h5")
    assert (meta.anatomy, meta.contrast) == ("brain", "T1PRE")


def test_slice_metadata_via_for_slice():
    meta = parse_header(header(KNEE_BODY)).for_slice(20, ("Meniscus Tear",))
    assert meta.slice_index == 20 and meta.pathology == ("Meniscus Tear",)
    assert dataclasses.replace(meta, slice_index=None, pathology=()) == parse_header(
        header(KNEE_BODY)
    )


@pytest.mark.parametrize(
    "xml, message",
    [
        ("<ismrmrdHeader><encoding>", "not valid XML"),
        ("not xml at all", "not valid XML"),
        ("", "empty"),
        (b"   ", "empty"),
        ('<foo xmlns="http://www.ismrm.org/ISMRMRD"/>', "expected <ismrmrdHeader>"),
    ],
)
def test_invalid_header_raises_header_error(xml, message):
    with pytest.raises(HeaderError, match=message):
        parse_header(xml)


# ----------------------------------------------------------------------------- issue 13 items 9, 10
@pytest.mark.parametrize("body, field", [
    ("<TR>1e300</TR><TE>10</TE>", "tr_ms"),
    ("<TR>-5</TR><TE>10</TE>", "tr_ms"),
    ("<TR>500</TR><TE>10</TE><flipAngle_deg>1e300</flipAngle_deg>", "flip_angle_deg"),
    ("<TR>500</TR><TE>-1</TE>", "te_ms"),
    ("<TR>500</TR><TE>10</TE><TI>1e12</TI>", "ti_ms"),
    ("<TR>500</TR><TE>10</TE><flipAngle_deg>-30</flipAngle_deg>", "flip_angle_deg"),
])
def test_out_of_range_mr_parameters_become_none_with_a_warning(body, field, caplog):
    meta = parse_header(header(f"<sequenceParameters>{body}</sequenceParameters>"))
    assert getattr(meta, field) is None
    assert meta.tr_ms in (None, 500.0)
    assert "out of range" in caplog.text
    prompt = build_prompt(meta.for_slice(0))
    assert "e+" not in prompt and "-" not in prompt.split("Slice 0")[-1]


def test_absurd_field_strength_is_none():
    body = "<acquisitionSystemInformation><systemFieldStrength_T>1e300</systemFieldStrength_T>"\
           "</acquisitionSystemInformation>"
    assert parse_header(header(body)).field_strength_t is None


def test_prompt_never_raises_on_huge_numbers():
    meta = ScanMetadata(anatomy="brain", tr_ms=1e300, flip_angle_deg=float("inf"))
    assert build_prompt(meta) == "brain"


def test_malformed_or_implausible_dates_are_not_logged(caplog):
    """PHI (a birth date) never reaches a log line, even when it is malformed."""
    import logging

    from contextmri_core.data.study import parse_study

    caplog.set_level(logging.DEBUG)
    for birth, study in (("19550831", "2021-04-09"), ("2030-01-01", "2021-04-09"),
                         ("1955-08-31", "20210409")):
        xml = header(subject(birth, "F", study) + "<measurementInformation><seriesTime>"
                     "17h47</seriesTime></measurementInformation>")
        parse_header(xml)
        parse_study(xml)
    assert "birth date" in caplog.text  # the warning is still there, without the value
    for value in ("19550831", "1955", "2030", "20210409", "2021", "17h47"):
        assert value not in caplog.text, value
