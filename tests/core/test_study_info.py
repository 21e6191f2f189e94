"""ISMRMRD XML header -> StudyInfo (patient, study, series, equipment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contextmri_core.data.study import StudyInfo, parse_study
from contextmri_core.errors import HeaderError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

FULL = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <subjectInformation>
    <patientName>Müller^Jörg</patientName><patientWeight_kg>71.5</patientWeight_kg>
    <patientID>PID-42</patientID><patientBirthdate>1970-02-28</patientBirthdate>
    <patientGender>f</patientGender>
  </subjectInformation>
  <studyInformation>
    <studyDate>2021-06-01+02:00</studyDate><studyTime>08:15:30.1234567Z</studyTime>
    <studyID>ST7</studyID><accessionNumber>ACC9</accessionNumber>
    <referringPhysicianName>Dr^Who</referringPhysicianName>
    <studyDescription>BRAIN ROUTINE</studyDescription>
    <studyInstanceUID>1.2.3.4.5</studyInstanceUID>
  </studyInformation>
  <measurementInformation>
    <measurementID>M_1</measurementID><seriesDate>2021-06-01</seriesDate>
    <seriesTime>08:20:00</seriesTime><patientPosition>FFS</patientPosition>
    <protocolName>AX FLAIR</protocolName><seriesDescription>AX FLAIR fs</seriesDescription>
    <seriesInstanceUIDRoot>1.2.3.9</seriesInstanceUIDRoot>
    <frameOfReferenceUID>1.2.3.6</frameOfReferenceUID>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor><systemModel>Aera</systemModel>
    <systemFieldStrength_T>1.494</systemFieldStrength_T>
    <institutionName>Clinic</institutionName><stationName>MR1</stationName>
    <deviceSerialNumber>41964</deviceSerialNumber>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>63642294</H1resonanceFrequency_Hz>
  </experimentalConditions>
  <encoding><echoTrainLength>16</echoTrainLength></encoding>
</ismrmrdHeader>
"""

EXPECTED = StudyInfo(
    patient_name="Müller^Jörg", patient_id="PID-42", patient_birth_date="1970-02-28",
    patient_sex="F", patient_weight_kg=71.5, study_date="2021-06-01",
    study_time="08:15:30.123456", study_id="ST7", study_description="BRAIN ROUTINE",
    study_instance_uid="1.2.3.4.5", accession_number="ACC9", referring_physician="Dr^Who",
    protocol_name="AX FLAIR", series_description="AX FLAIR fs", measurement_id="M_1",
    series_date="2021-06-01", series_time="08:20:00", series_instance_uid_root="1.2.3.9",
    frame_of_reference_uid="1.2.3.6", patient_position="FFS", institution_name="Clinic",
    station_name="MR1", system_vendor="SIEMENS", system_model="Aera", field_strength_t=1.494,
    device_serial="41964", echo_train_length=16, h1_frequency_hz=63642294.0,
)


def header(body: str) -> str:
    return f'<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">{body}</ismrmrdHeader>'


def test_every_field_is_read():
    assert parse_study(FULL) == EXPECTED
    assert parse_study(FULL.encode("utf-8")) == EXPECTED


def test_an_empty_header_gives_all_none():
    info = parse_study(header(""))
    assert info == StudyInfo()
    assert all(getattr(info, f) is None for f in info.__dataclass_fields__)


@pytest.mark.parametrize("body, field, value", [
    ("<subjectInformation><patientName> </patientName></subjectInformation>",
     "patient_name", None),
    ("<subjectInformation><patientGender>X</patientGender></subjectInformation>",
     "patient_sex", None),
    ("<subjectInformation><patientGender>o</patientGender></subjectInformation>",
     "patient_sex", "O"),
    ("<subjectInformation><patientBirthdate>1970-02-30</patientBirthdate>"
     "</subjectInformation>", "patient_birth_date", None),
    ("<subjectInformation><patientBirthdate>19700228</patientBirthdate>"
     "</subjectInformation>", "patient_birth_date", None),
    ("<subjectInformation><patientWeight_kg>heavy</patientWeight_kg></subjectInformation>",
     "patient_weight_kg", None),
    ("<subjectInformation><patientWeight_kg>0</patientWeight_kg></subjectInformation>",
     "patient_weight_kg", None),
    ("<studyInformation><studyTime>25:00:00</studyTime></studyInformation>",
     "study_time", None),
    ("<studyInformation><studyTime>7:00</studyTime></studyInformation>", "study_time", None),
    ("<studyInformation><studyTime>07:00:01+01:00</studyTime></studyInformation>",
     "study_time", "07:00:01"),
    ("<studyInformation><studyDate>2020-01-02</studyDate></studyInformation>",
     "study_date", "2020-01-02"),
    ("<measurementInformation><seriesTime></seriesTime></measurementInformation>",
     "series_time", None),
    ("<acquisitionSystemInformation><systemFieldStrength_T>0</systemFieldStrength_T>"
     "</acquisitionSystemInformation>", "field_strength_t", None),
    ("<acquisitionSystemInformation><systemFieldStrength_T>nan</systemFieldStrength_T>"
     "</acquisitionSystemInformation>", "field_strength_t", None),
    ("<acquisitionSystemInformation><systemFieldStrength_T>3</systemFieldStrength_T>"
     "</acquisitionSystemInformation>", "field_strength_t", 3.0),
    ("<encoding><echoTrainLength>0</echoTrainLength></encoding>", "echo_train_length", None),
])
def test_missing_or_malformed_fields_are_none(body, field, value):
    assert getattr(parse_study(header(body)), field) == value


def test_a_real_fastmri_header_has_only_what_it_carries():
    info = parse_study((FIXTURES / "fastmri_brain_axflair_header.xml").read_bytes())
    assert info.patient_name is None and info.patient_id is None and info.study_date is None
    assert info.study_time == "16:35:20"
    assert info.protocol_name == "AX FLAIR_FBB"
    assert info.patient_position == "HFS"
    assert info.system_vendor == "SIEMENS" and info.field_strength_t == pytest.approx(1.494)
    assert info.frame_of_reference_uid.startswith("1.3.12.2.1107.5.2.18.41964")


def test_the_synthetic_header_round_trips():
    from contextmri_core.io.raw.ismrmrd_writer import build_header_xml
    from contextmri_core.synth.scan import SimConfig, simulate

    scan = simulate(3, "AXT2", SimConfig(matrix=32, num_slices=1, num_coils=2))
    info = parse_study(build_header_xml(scan))
    subject = scan.subject
    assert (info.patient_name, info.patient_id) == (subject.patient_name, subject.patient_id)
    assert info.patient_birth_date == subject.birth_date
    assert (info.study_date, info.study_time) == (subject.study_date, subject.study_time)
    assert info.patient_sex == subject.sex and info.patient_position == "HFS"
    assert info.field_strength_t == pytest.approx(scan.config.field_strength_t)


@pytest.mark.parametrize("xml", ["", "<notxml", "<other/>"])
def test_invalid_headers_raise(xml):
    with pytest.raises(HeaderError):
        parse_study(xml)
