"""Reconstructed slices -> DICOM MR Image Storage files (explicit VR little endian, pydicom).

One file per slice (``IM_0001.dcm``, ...), 16-bit unsigned MONOCHROME2 with one scale for the
whole series (a Real World Value Mapping gives the real value: magnitude/std in the recon's
arbitrary units, phase in radians). Patient/study/series facts come from the ISMRMRD header
(``StudyInfo``), MR parameters from ``ScanMetadata``, geometry from ``SliceGeometry``: images
are ``(ny, nx)`` = (E1, RO), so a row runs along ``read_dir`` and a column along ``phase_dir``.
Every image is marked DERIVED and says how it was made (AI or classical FALLBACK). Files are
written atomically with mode 0o600 in directories created 0o700: they carry patient data,
which is never logged. The only module that imports pydicom.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid

from contextmri_core import __version__
from contextmri_core.data.geometry import SliceGeometry
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt
from contextmri_core.data.study import StudyInfo, parse_study
from contextmri_core.errors import InputFileError, ShapeError, check_fields
from contextmri_core.io.dicom.values import (MAX_STORED, SeriesScale, mr_sequence, quantise,
                                             series_scale)
from contextmri_core.io.dicom.values import decimal_string as _ds
from contextmri_core.io.dicom.values import dicom_date as _da
from contextmri_core.io.dicom.values import dicom_time as _tm
from contextmri_core.io.dicom.values import text_value as _text

logger = logging.getLogger(__name__)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: Generated once (2.25 UUID root) for contextmri; identifies the writing software.
IMPLEMENTATION_CLASS_UID = "2.25.1070530283732315411078339897262183326"
IMPLEMENTATION_VERSION_NAME = "CONTEXTMRI_" + __version__.replace(".", "")[:5]
GAMMA_MHZ_PER_T = 42.577478518
KINDS = ("magnitude", "phase", "uncertainty")
METHODS = ("dds", "dps", "sense", "zero_filled", "l1_wavelet", "reference")
AI_METHODS = ("dds", "dps")
_PYDICOM3 = int(pydicom.__version__.split(".")[0]) >= 3
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_KIND_TEXT = {"magnitude": "magnitude image", "phase": "phase map (radians)",
              "uncertainty": "uncertainty map (posterior standard deviation)"}
_TEXT_VRS = ("SH", "LO", "ST", "LT", "PN", "UT", "UC")
# ImageType values 3 (MR defined terms) and 4 (magnitude/phase/std, as vendors' value 3).
_IMAGE_TYPE = {"magnitude": ("OTHER", "M"), "phase": ("PHASE MAP", "P"),
               "uncertainty": ("OTHER", "UNCERTAINTY")}
# ScanMetadata.anatomy -> (BodyPartExamined, paired body part: needs Laterality)
_BODY_PART = {"brain": ("BRAIN", False), "knee": ("KNEE", True),
              "prostate": ("PROSTATE", False), "spine": ("SPINE", False),
              "abdomen": ("ABDOMEN", False), "cardiac": ("HEART", False)}


@dataclass(frozen=True)
class DicomSeries:
    """One reconstructed series: ``images[i]`` is a real ``(ny, nx)`` array (magnitude >= 0,
    phase in radians within [-pi, pi], or std) with ``geometry[i]`` and ``metadata[i]``.
    ``fallback_reason`` marks a classical recon standing in for the diffusion recon."""

    images: Sequence[np.ndarray]
    geometry: Sequence[SliceGeometry]
    metadata: Sequence[ScanMetadata]
    series_number: int
    description: str
    kind: str = "magnitude"
    method: str = "dds"
    fallback_reason: Optional[str] = None
    comments: Mapping[str, Any] = field(default_factory=dict)
    protocol: str = ""  # the scan's protocol name (titles); "" = unknown
    prompts: Mapping[int, str] = field(default_factory=dict)  # slice index -> the prior's text

    def prompt_of(self, meta: ScanMetadata) -> str:
        """The text the prior was conditioned on for this slice (``build_prompt`` of the
        metadata when the reconstruction did not say)."""
        given = self.prompts.get(int(meta.slice_index or 0)) if self.prompts else None
        return given if given is not None else build_prompt(meta)

    def __post_init__(self) -> None:
        counts = (len(self.images), len(self.geometry), len(self.metadata))
        if counts[0] == 0 or len(set(counts)) != 1:
            raise ShapeError(f"DicomSeries needs images, geometry and metadata of one equal, "
                             f"non-zero length; got {counts}")
        bad = [(i, a.dtype, a.shape) for i, a in enumerate(map(np.asarray, self.images))
               if a.ndim != 2 or a.size == 0 or np.iscomplexobj(a)]
        if bad:
            raise ShapeError(f"DicomSeries.images[{bad[0][0]}] must be a real (ny, nx) array, "
                             f"got {bad[0][1]} {bad[0][2]}: pass np.abs/np.angle of complex data")
        check_fields(self, [
            ("kind", self.kind in KINDS, f"use one of {KINDS}"),
            ("method", self.method in METHODS, f"use one of {METHODS}"),
            ("method", not (self.fallback_reason and self.method in AI_METHODS),
             "a fallback (fallback_reason set) is a classical method: sense, zero_filled..."),
        ])


def new_uid() -> str:
    """A fresh DICOM UID."""
    return str(generate_uid())


def _valid_uid(text: Optional[str], name: str) -> Optional[str]:
    """``text`` if it is a valid UID, else None (logged by ``name``)."""
    if text is None or (len(text) <= 64 and _UID.match(text)):
        return text
    logger.warning("ignoring the header's %s: not a valid DICOM UID; using a new one", name)
    return None


@dataclass(frozen=True)
class StudyContext:
    """What all series of one scan share; ``fov_mm`` (x = readout, y = phase encode,
    z = slice thickness) is the reconstructed FOV in mm, as ``RawScan.fov_mm``."""

    study: StudyInfo
    study_instance_uid: str
    frame_of_reference_uid: str
    fov_mm: Tuple[float, float, float]

    @classmethod
    def from_header(cls, header_xml: Any, fov_mm: Sequence[float]) -> "StudyContext":
        """Context from the ISMRMRD header: its study/frame-of-reference UIDs when valid,
        else new ones."""
        study = parse_study(header_xml)
        study_uid = _valid_uid(study.study_instance_uid, "studyInstanceUID") or new_uid()
        frame_uid = _valid_uid(study.frame_of_reference_uid, "frameOfReferenceUID") or new_uid()
        fx, fy, fz = (float(v) for v in fov_mm)
        return cls(study, study_uid, frame_uid, (fx, fy, fz))


def _opt(ds: Dataset, keyword: str, value: Optional[float]) -> None:
    """Set the DS ``keyword`` if ``value`` is a finite number."""
    if value is not None and math.isfinite(value):
        setattr(ds, keyword, _ds(value))


# --- dataset ---------------------------------------------------------------------------------

def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


# (keyword, StudyInfo field, maximum length): the text attributes copied from the header.
_STUDY_TEXT = (
    ("PatientName", "patient_name", 64), ("PatientID", "patient_id", 64),
    ("StudyID", "study_id", 16), ("StudyDescription", "study_description", 64),
    ("AccessionNumber", "accession_number", 16),
    ("ReferringPhysicianName", "referring_physician", 64),
    ("Manufacturer", "system_vendor", 64), ("ManufacturerModelName", "system_model", 64),
    ("InstitutionName", "institution_name", 64), ("StationName", "station_name", 16),
    ("DeviceSerialNumber", "device_serial", 64), ("ProtocolName", "protocol_name", 64),
)
_PATIENT_POSITIONS = ("HFP", "HFS", "HFDR", "HFDL", "FFP", "FFS", "FFDR", "FFDL")


def _patient_study(ds: Dataset, ctx: StudyContext) -> None:
    """Patient, General Study, Frame of Reference and General Equipment from the header."""
    s = ctx.study
    for keyword, name, limit in _STUDY_TEXT:
        setattr(ds, keyword, _text(getattr(s, name), limit, keyword))
    ds.PatientBirthDate, ds.PatientSex = _da(s.patient_birth_date), s.patient_sex or ""
    position = (s.patient_position or "").upper()
    ds.PatientPosition = position if position in _PATIENT_POSITIONS else ""
    _opt(ds, "PatientWeight", s.patient_weight_kg)
    ds.StudyInstanceUID = ctx.study_instance_uid
    ds.StudyDate, ds.StudyTime = _da(s.study_date), _tm(s.study_time)
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SoftwareVersions = f"contextmri {__version__}"


def series_description(series: DicomSeries) -> str:
    """``series.description``, ending in " FALLBACK <method>" for a fallback (<= 64 chars)."""
    suffix = f" FALLBACK {series.method}" if series.fallback_reason else ""
    text = _text(series.description, 64, "SeriesDescription")
    if suffix and not text.endswith(suffix):
        text = text[:64 - len(suffix)].rstrip() + suffix
    return text


def _series(ds: Dataset, series: DicomSeries, ctx: StudyContext, series_uid: str) -> None:
    s = ctx.study
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series.series_number)
    ds.SeriesDescription = series_description(series)
    ds.SeriesDate = _da(s.series_date or s.study_date)
    ds.SeriesTime = _tm(s.series_time or s.study_time)
    part, paired = _BODY_PART.get(series.metadata[0].anatomy or "", ("", True))
    if part:
        ds.BodyPartExamined = part
    if paired:
        ds.Laterality = ""  # unknown: the header does not say which side


def derivation_description(series: DicomSeries) -> str:
    """How the image was made: the contextmri AI, a classical FALLBACK, or a baseline."""
    kind = _KIND_TEXT[series.kind]
    if series.fallback_reason:
        return (f"FALLBACK: {kind} reconstructed by the classical {series.method} method "
                f"instead of the contextmri AI (diffusion prior): {series.fallback_reason}")
    if series.method in AI_METHODS:
        return (f"{kind} reconstructed from undersampled k-space by the contextmri AI "
                f"(diffusion prior, {series.method.upper()} sampling)")
    return f"{kind} reconstructed by contextmri with the classical {series.method} method"


def _mr(ds: Dataset, meta: ScanMetadata, ctx: StudyContext) -> None:
    ds.ScanningSequence, ds.SequenceVariant = mr_sequence(meta)
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = _text(meta.sequence, 16, "SequenceName")
    ds.RepetitionTime = _ds(meta.tr_ms) if meta.tr_ms is not None else ""
    ds.EchoTime = _ds(meta.te_ms) if meta.te_ms is not None else ""
    if meta.ti_ms is not None:
        ds.InversionTime = _ds(meta.ti_ms)
    etl = ctx.study.echo_train_length
    ds.EchoTrainLength = int(etl) if etl is not None else ""
    _opt(ds, "FlipAngle", meta.flip_angle_deg)
    b0 = meta.field_strength_t or ctx.study.field_strength_t
    _opt(ds, "MagneticFieldStrength", b0)
    hz = ctx.study.h1_frequency_hz
    _opt(ds, "ImagingFrequency", hz / 1e6 if hz else (b0 * GAMMA_MHZ_PER_T if b0 else None))
    ds.ImagedNucleus = "1H"


def _plane(ds: Dataset, geom: SliceGeometry, shape: Tuple[int, int], fov: Sequence[float]
           ) -> None:
    """Image Plane: orientation read+phase, spacing fov/n, position of pixel (0, 0)."""
    ny, nx = shape
    fx, fy, fz = fov
    if fx <= 0 or fy <= 0:
        logger.warning("no reconstructed field of view: pixel spacing set to 1 mm")
    dx = fx / nx if fx > 0 else 1.0
    dy = fy / ny if fy > 0 else 1.0
    read, phase = np.asarray(geom.read_dir, float), np.asarray(geom.phase_dir, float)
    pos = np.asarray(geom.position, float)
    corner = pos - read * dx * (nx // 2) - phase * dy * (ny // 2)
    ds.ImageOrientationPatient = [_ds(v) for v in (*read, *phase)]
    ds.ImagePositionPatient = [_ds(v) for v in corner]
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SliceThickness = _ds(fz) if fz > 0 else ""
    ds.SliceLocation = _ds(float(pos @ np.asarray(geom.slice_dir, float)))


def image_comments(series: DicomSeries, meta: ScanMetadata, scale: SeriesScale) -> str:
    """JSON: method, kind, prompt, fallback reason, rescale, then ``series.comments``."""
    units = "rad" if series.kind == "phase" else "arbitrary units"
    core = {"software": f"contextmri {__version__}", "method": series.method,
            "kind": series.kind, "prompt": series.prompt_of(meta),
            "fallback_reason": series.fallback_reason,
            "real_value": f"stored * {scale.slope!r} + {scale.intercept!r} [{units}]"}
    extra = {str(k): v for k, v in series.comments.items() if str(k) not in core}
    text = json.dumps({**core, **extra}, default=str, ensure_ascii=False)
    if len(text) > 10240:
        logger.warning("ImageComments over 10240 characters: series comments dropped")
        text = json.dumps({**core, "comments_truncated": True}, ensure_ascii=False)[:10240]
    return text


def _derived(ds: Dataset, series: DicomSeries, meta: ScanMetadata, scale: SeriesScale) -> None:
    ds.ImageType = ["DERIVED", "SECONDARY", *_IMAGE_TYPE[series.kind]]
    ds.DerivationDescription = _text(derivation_description(series), 1024,
                                     "DerivationDescription")
    ds.ImageComments = image_comments(series, meta, scale)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"


def _real_world_mapping(scale: SeriesScale, kind: str) -> Dataset:
    """Real World Value Mapping item: value = stored * slope + intercept, in rad or a.u."""
    units = Dataset()
    units.CodeValue, units.CodingSchemeDesignator = ("rad" if kind == "phase" else "1"), "UCUM"
    units.CodeMeaning = "radian" if kind == "phase" else "no units (arbitrary)"
    item = Dataset()
    item.add_new(tag_for_keyword("RealWorldValueFirstValueMapped"), "US", 0)  # "US or SS"
    item.add_new(tag_for_keyword("RealWorldValueLastValueMapped"), "US", MAX_STORED)
    item.RealWorldValueIntercept = scale.intercept
    item.RealWorldValueSlope = scale.slope
    item.LUTExplanation = _KIND_TEXT[kind]
    item.LUTLabel = kind.upper()
    item.MeasurementUnitsCodeSequence = [units]
    return item


def _pixels(ds: Dataset, stored: np.ndarray, scale: SeriesScale, kind: str) -> None:
    """Image Pixel (uint16 MONOCHROME2), window in stored values, real-world mapping."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in stored.shape)
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = _ds(scale.window_center), _ds(scale.window_width)
    ds.RealWorldValueMappingSequence = [_real_world_mapping(scale, kind)]
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(stored, "<u2").tobytes())


def build_dataset(series: DicomSeries, ctx: StudyContext, index: int, series_uid: str,
                  scale: SeriesScale) -> Dataset:
    """The MR Image dataset (file meta attached) of ``series.images[index]``."""
    meta = series.metadata[index]
    sop_uid = new_uid()
    now = _dt.datetime.now()
    ds = Dataset()
    ds.file_meta = _file_meta(sop_uid)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S")
    _patient_study(ds, ctx)
    _series(ds, series, ctx, series_uid)
    ds.InstanceNumber = index + 1
    _derived(ds, series, meta, scale)
    _mr(ds, meta, ctx)
    _plane(ds, series.geometry[index], np.shape(series.images[index]), ctx.fov_mm)
    _pixels(ds, quantise(series.images[index], scale), scale, series.kind)
    if any(e.VR in _TEXT_VRS and not str(e.value).isascii() for e in ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


# --- files -----------------------------------------------------------------------------------

def _private_dirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0o700 (existing ones are left alone)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass


def _write_atomic(path: Path, ds: Dataset) -> None:
    """Write ``ds`` to a 0o600 temp file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            if _PYDICOM3:
                ds.save_as(f, enforce_file_format=True)
            else:  # pydicom 2.x
                ds.is_little_endian, ds.is_implicit_VR = True, False
                ds.save_as(f, write_like_original=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_series(out_dir: Path, series: DicomSeries, ctx: StudyContext) -> List[Path]:
    """Write ``series`` as ``out_dir/IM_0001.dcm``... (one file per slice); returns the paths.

    A new SeriesInstanceUID per call; study and frame-of-reference UIDs from ``ctx``.
    Raises ``InputFileError`` naming the file when writing fails.
    """
    out_dir = Path(out_dir)
    series_uid = new_uid()
    scale = series_scale(series.images, series.kind)
    paths: List[Path] = []
    try:
        _private_dirs(out_dir)
        for i in range(len(series.images)):
            path = out_dir / f"IM_{i + 1:04d}.dcm"
            _write_atomic(path, build_dataset(series, ctx, i, series_uid, scale))
            paths.append(path)
    except OSError as exc:
        target = paths[-1].with_name(f"IM_{len(paths) + 1:04d}.dcm") if paths else out_dir
        raise InputFileError(target, f"cannot write DICOM: {exc.strerror or exc}") from exc
    logger.info("wrote %d DICOM files of series %d %r", len(paths), series.series_number,
                series_description(series))
    return paths
