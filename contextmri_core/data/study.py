"""ISMRMRD XML header -> ``StudyInfo``: who, when and where a scan was made (pure).

The patient/study/series/equipment fields a DICOM writer needs and ``ScanMetadata`` does not
carry (ismrmrd.xsd names): ``subjectInformation``, ``studyInformation``,
``measurementInformation``, ``acquisitionSystemInformation`` and, for the imaging frequency,
``experimentalConditions``. Dates stay in the ISMRMRD form ``YYYY-MM-DD`` and times become
``HH:MM:SS[.ffffff]`` (time zones are dropped). Anything absent, empty or malformed is ``None``.
Sex, dates and the field strength are validated with ``header.py``'s own helpers.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Optional, Union

from contextmri_core.data.header import _field_strength, _parse_xs_date, _patient_sex
from contextmri_core.data.xmlutil import find_float, find_int, find_text, parse_xml
from contextmri_core.errors import HeaderError

logger = logging.getLogger(__name__)

_ROOT_TAG = "ismrmrdHeader"
# xs:time: HH:MM:SS with optional fraction and time zone (the zone is ignored).
_XS_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:Z|[+-]\d{2}:\d{2})?$")


@dataclass(frozen=True)
class StudyInfo:
    """Patient, study, series and equipment facts of one scan; ``None`` when absent.

    Dates are ``YYYY-MM-DD``, times ``HH:MM:SS[.ffffff]``; ``patient_sex`` is M/F/O;
    ``patient_position`` as ISMRMRD/DICOM ("HFS", ...). ``frame_of_reference_uid``,
    ``echo_train_length`` and ``h1_frequency_hz`` are extras the DICOM writer also uses.
    """

    patient_name: Optional[str] = None
    patient_id: Optional[str] = None
    patient_birth_date: Optional[str] = None
    patient_sex: Optional[str] = None
    patient_weight_kg: Optional[float] = None
    study_date: Optional[str] = None
    study_time: Optional[str] = None
    study_id: Optional[str] = None
    study_description: Optional[str] = None
    study_instance_uid: Optional[str] = None
    accession_number: Optional[str] = None
    referring_physician: Optional[str] = None
    protocol_name: Optional[str] = None
    series_description: Optional[str] = None
    measurement_id: Optional[str] = None
    series_date: Optional[str] = None
    series_time: Optional[str] = None
    series_instance_uid_root: Optional[str] = None
    frame_of_reference_uid: Optional[str] = None
    patient_position: Optional[str] = None
    institution_name: Optional[str] = None
    station_name: Optional[str] = None
    system_vendor: Optional[str] = None
    system_model: Optional[str] = None
    field_strength_t: Optional[float] = None
    device_serial: Optional[str] = None
    echo_train_length: Optional[int] = None
    h1_frequency_hz: Optional[float] = None


def _date(text: Optional[str], name: str) -> Optional[str]:
    """A valid xs:date as ``YYYY-MM-DD`` (zone dropped); None (logged) otherwise."""
    parsed = _parse_xs_date(text, name)
    return parsed.isoformat() if parsed is not None else None


def _time(text: Optional[str], name: str) -> Optional[str]:
    """A valid xs:time as ``HH:MM:SS[.ffffff]`` (at most 6 fraction digits); None otherwise."""
    if text is None:
        return None
    match = _XS_TIME.match(text)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59 \
            or int(match.group(3)) > 60:
        logger.warning("ignoring the %s in the ISMRMRD header: not HH:MM:SS", name)
        return None
    fraction = (match.group(4) or "")[:7]
    return f"{match.group(1)}:{match.group(2)}:{match.group(3)}{fraction}"


def _finite_positive(value: Optional[float], upper: float) -> Optional[float]:
    """``value`` if finite and in (0, ``upper``], else None (absurd header entries)."""
    return value if value is not None and math.isfinite(value) and 0 < value <= upper else None


def _patient(root: ET.Element) -> dict:
    subject = root.find("subjectInformation")
    return dict(
        patient_name=find_text(subject, "patientName"),
        patient_id=find_text(subject, "patientID"),
        patient_birth_date=_date(find_text(subject, "patientBirthdate"), "birth date"),
        patient_sex=_patient_sex(find_text(subject, "patientGender")),
        patient_weight_kg=_finite_positive(find_float(subject, "patientWeight_kg"), 1000.0),
    )


def _study(root: ET.Element) -> dict:
    study = root.find("studyInformation")
    return dict(
        study_date=_date(find_text(study, "studyDate"), "study date"),
        study_time=_time(find_text(study, "studyTime"), "study time"),
        study_id=find_text(study, "studyID"),
        study_description=find_text(study, "studyDescription"),
        study_instance_uid=find_text(study, "studyInstanceUID"),
        accession_number=find_text(study, "accessionNumber"),
        referring_physician=find_text(study, "referringPhysicianName"),
    )


def _measurement(root: ET.Element) -> dict:
    meas = root.find("measurementInformation")
    return dict(
        protocol_name=find_text(meas, "protocolName"),
        series_description=find_text(meas, "seriesDescription"),
        measurement_id=find_text(meas, "measurementID"),
        series_date=_date(find_text(meas, "seriesDate"), "series date"),
        series_time=_time(find_text(meas, "seriesTime"), "series time"),
        series_instance_uid_root=find_text(meas, "seriesInstanceUIDRoot"),
        frame_of_reference_uid=find_text(meas, "frameOfReferenceUID"),
        patient_position=find_text(meas, "patientPosition"),
    )


def _system(root: ET.Element) -> dict:
    system = root.find("acquisitionSystemInformation")
    etl = find_int(root, "encoding/echoTrainLength")
    return dict(
        institution_name=find_text(system, "institutionName"),
        station_name=find_text(system, "stationName"),
        system_vendor=find_text(system, "systemVendor"),
        system_model=find_text(system, "systemModel"),
        field_strength_t=_field_strength(find_float(system, "systemFieldStrength_T")),
        device_serial=find_text(system, "deviceSerialNumber"),
        echo_train_length=etl if etl is not None and 0 < etl <= 100_000 else None,
        h1_frequency_hz=_finite_positive(
            find_float(root, "experimentalConditions/H1resonanceFrequency_Hz"), 1.3e9),
    )


def parse_study(xml: Union[str, bytes]) -> StudyInfo:
    """``StudyInfo`` from an ISMRMRD XML header (text or UTF-8 bytes).

    Raises ``HeaderError`` if the text is not XML or its root is not ``ismrmrdHeader``.
    """
    root = parse_xml(xml)
    if root.tag != _ROOT_TAG:
        raise HeaderError(f"the XML root element is <{root.tag}>, expected <{_ROOT_TAG}>")
    return StudyInfo(**_patient(root), **_study(root), **_measurement(root), **_system(root))
