"""ISMRMRD XML header -> ``ScanMetadata``: the one pure function that builds scan metadata.

Reads only the fields the prompt and the structured encoder use (ismrmrd.xsd names):
``sequenceParameters`` (TR/TE/TI in ms, flip angle in degrees, sequence_type),
``measurementInformation`` (protocolName, seriesDescription), ``studyInformation``
(studyDescription, studyDate), ``subjectInformation`` (patientBirthdate, patientGender) and
``acquisitionSystemInformation`` (vendor, model, systemFieldStrength_T, coil names) and the
first ``encoding`` (in-plane pixel spacing and slice thickness from the reconstruction space's
field of view and matrix). The slice plane here comes from the protocol name ("AX", "COR",
"SAG"); readers replace it with the plane of the acquisitions' slice normal when they have one.
Anything absent or unusable is ``None``. Per-slice fields are set later with
``ScanMetadata.for_slice``.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from datetime import date
from typing import List, Optional, Tuple, Union

from contextmri_core.data.encoding import parse_encoding
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.vocab import (derive_anatomy, fastmri_name_parts, map_contrast,
                                        map_plane)
from contextmri_core.data.xmlutil import find_all_text, find_float, find_text, parse_xml
from contextmri_core.errors import HeaderError

logger = logging.getLogger(__name__)

_ROOT_TAG = "ismrmrdHeader"
# xs:date: YYYY-MM-DD with an optional time zone ("Z", "+01:00"), which is ignored.
_XS_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:Z|[+-]\d{2}:\d{2})?$")


#: Plausible ranges (inclusive) of the MR parameters, in the header's units (ms, degrees, T);
#: a value outside is a corrupt or placeholder header entry and is dropped (None), with a
#: warning. Generous on purpose: they reject 1e300 and negative times, not unusual protocols.
PLAUSIBLE = {"TR": (0.0, 100_000.0), "TE": (0.0, 10_000.0), "TI": (0.0, 100_000.0),
             "flipAngle_deg": (0.0, 360.0), "systemFieldStrength_T": (0.0, 30.0)}
_STRICTLY_POSITIVE = ("TR", "flipAngle_deg", "systemFieldStrength_T")


def in_range(name: str, value: float) -> bool:
    """Whether ``value`` of header field ``name`` lies in its :data:`PLAUSIBLE` range."""
    lo, hi = PLAUSIBLE[name]
    if name in _STRICTLY_POSITIVE:
        return lo < value <= hi
    return lo <= value <= hi


def _finite_floats(texts: List[str], name: str) -> Tuple[float, ...]:
    """Every finite, plausible number in ``texts``; other entries are logged and dropped."""
    values = []
    for text in texts:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            logger.warning("ignoring %s value %r in the ISMRMRD header: not a number", name, text)
        elif name in PLAUSIBLE and not in_range(name, value):
            lo, hi = PLAUSIBLE[name]
            logger.warning("ignoring %s value %r in the ISMRMRD header: out of range [%g, %g]",
                           name, text, lo, hi)
        else:
            values.append(value)
    return tuple(values)


def _parse_xs_date(text: Optional[str], name: str) -> Optional[date]:
    """An xs:date string as ``datetime.date``; None (logged) if absent or malformed.

    Dates are patient data: the log names the field, never its value."""
    if text is None:
        return None
    match = _XS_DATE.match(text)
    try:
        if match is None:
            raise ValueError("not YYYY-MM-DD")
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError as exc:
        reason = str(exc) if match is None else "not a calendar date"
        logger.warning("ignoring the %s in the ISMRMRD header: %s", name, reason)
        return None


def age_in_years(birth: Optional[date], on: Optional[date]) -> Optional[int]:
    """Whole years from ``birth`` to ``on`` (not yet a year older before the birthday).

    A 29 February birthday counts from 1 March in non-leap years. None if either date is
    missing or ``on`` precedes ``birth`` (logged without the dates: they are patient data).
    """
    if birth is None or on is None:
        return None
    if on < birth:
        logger.warning("the study date precedes the birth date in the ISMRMRD header: age unknown")
        return None
    return on.year - birth.year - int((on.month, on.day) < (birth.month, birth.day))


def _patient_sex(text: Optional[str]) -> Optional[str]:
    """``patientGender`` as "M", "F" or "O" (case-insensitive); anything else is None."""
    if text is None:
        return None
    sex = text.strip().upper()
    return sex if sex in ("M", "F", "O") else None


def _positive(value: Optional[float]) -> Optional[float]:
    """``value`` if finite and > 0, else None (a 0 T field strength is a placeholder)."""
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _field_strength(value: Optional[float]) -> Optional[float]:
    """B0 in tesla if plausible (0 < B0 <= 30 T), else None (logged when present)."""
    if _positive(value) is None:
        return None
    if not in_range("systemFieldStrength_T", value):  # type: ignore[arg-type]
        logger.warning("ignoring systemFieldStrength_T %g in the ISMRMRD header: out of range",
                       value)
        return None
    return value


def _mr_parameters(root: ET.Element) -> dict:
    """TR/TE/TI (ms), flip angle (deg) and sequence type from ``sequenceParameters``."""
    seq = root.find("sequenceParameters")
    tr = _finite_floats(find_all_text(seq, "TR"), "TR")
    te = _finite_floats(find_all_text(seq, "TE"), "TE")
    ti = _finite_floats(find_all_text(seq, "TI"), "TI")
    fa = _finite_floats(find_all_text(seq, "flipAngle_deg"), "flipAngle_deg")
    return dict(
        sequence=find_text(seq, "sequence_type"),
        tr_ms=tr[0] if tr else None,
        te_ms=te[0] if te else None,
        ti_ms=ti[0] if ti else None,
        flip_angle_deg=fa[0] if fa else None,
        tr_all_ms=tr,
        te_all_ms=te,
        ti_all_ms=ti,
        flip_angle_all_deg=fa,
    )


def _subject(root: ET.Element) -> dict:
    """Age (whole years, at the study date) and sex of the patient."""
    birth = _parse_xs_date(find_text(root, "subjectInformation/patientBirthdate"), "birth date")
    study = _parse_xs_date(find_text(root, "studyInformation/studyDate"), "study date")
    return dict(
        patient_age_y=age_in_years(birth, study),
        patient_sex=_patient_sex(find_text(root, "subjectInformation/patientGender")),
    )


def _system(root: ET.Element) -> dict:
    """Vendor, model and B0 (tesla) from ``acquisitionSystemInformation``."""
    system = root.find("acquisitionSystemInformation")
    return dict(
        vendor=find_text(system, "systemVendor"),
        model=find_text(system, "systemModel"),
        field_strength_t=_field_strength(find_float(system, "systemFieldStrength_T")),
    )


#: Plausible in-plane pixel spacing and slice thickness (mm); values outside are dropped (None).
SPACING_RANGE_MM = (0.05, 20.0)
THICKNESS_RANGE_MM = (0.1, 100.0)


def _in_range(value: Optional[float], bounds: Tuple[float, float], name: str) -> Optional[float]:
    if value is None:
        return None
    if math.isfinite(value) and bounds[0] <= value <= bounds[1]:
        return float(value)
    logger.warning("ignoring %s %r mm from the ISMRMRD header: outside %s", name, value, bounds)
    return None


def _grid(root: ET.Element) -> dict:
    """In-plane pixel spacing (mean of x and y, mm) and slice thickness (mm) of the first
    encoding: reconstruction space, else encoded space (FOV / matrix; readout oversampling
    widens FOV and matrix alike)."""
    enc = parse_encoding(root)
    spacing = thickness = None
    for matrix, fov in ((enc.recon_matrix, enc.recon_fov_mm),
                        (enc.encoded_matrix, enc.encoded_fov_mm)):
        if spacing is None and matrix and fov and matrix[0] > 0 and matrix[1] > 0:
            spacing = (fov[0] / matrix[0] + fov[1] / matrix[1]) / 2.0
        if thickness is None and fov and fov[2] > 0:
            thickness = fov[2]
    return dict(pixel_spacing_mm=_in_range(spacing, SPACING_RANGE_MM, "pixel spacing"),
                slice_thickness_mm=_in_range(thickness, THICKNESS_RANGE_MM, "slice thickness"))


def parse_header(
    xml: Union[str, bytes],
    *,
    acquisition: Optional[str] = None,
    filename: Optional[str] = None,
    anatomy_override: Optional[str] = None,
) -> ScanMetadata:
    """Scan-level ``ScanMetadata`` (``slice_index`` None) from an ISMRMRD XML header.

    ``acquisition`` is the fastMRI file attribute (e.g. "AXFLAIR"), ``filename`` the source file
    name (fastMRI names carry anatomy and acquisition), ``anatomy_override`` wins over every
    derived anatomy. Contrast comes from, first that maps: acquisition, protocolName,
    seriesDescription, studyDescription, the fastMRI file name. Raises ``HeaderError`` if the
    text is not XML or its root is not ``ismrmrdHeader``.
    """
    root = parse_xml(xml)
    if root.tag != _ROOT_TAG:
        raise HeaderError(f"the XML root element is <{root.tag}>, expected <{_ROOT_TAG}>")
    protocol = find_text(root, "measurementInformation/protocolName")
    series = find_text(root, "measurementInformation/seriesDescription")
    study = find_text(root, "studyInformation/studyDescription")
    coils = find_all_text(root, "acquisitionSystemInformation/coilLabel/coilName")
    name_acquisition = fastmri_name_parts(filename)[1]
    if isinstance(acquisition, bytes):  # h5py may hand attributes over as bytes
        acquisition = acquisition.decode("utf-8", errors="replace")
    return ScanMetadata(
        anatomy=derive_anatomy(anatomy_override, (study, series, protocol, acquisition), coils,
                               filename),
        contrast=map_contrast(acquisition, protocol, series, study, name_acquisition),
        slice_plane=map_plane(acquisition, protocol, series, name_acquisition),
        protocol_name=protocol,
        series_description=series,
        **_mr_parameters(root),
        **_subject(root),
        **_system(root),
        **_grid(root),
    )
