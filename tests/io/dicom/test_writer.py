"""DICOM MR Image writer on synthetic ISMRMRD and fastMRI scans, validated with dciodvfy."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pydicom
import pytest

from contextmri_core.data.fftnp import ifftc
from contextmri_core.data.header import parse_header
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt
from contextmri_core.data.scan import RawScan
from contextmri_core.errors import ConfigError, ShapeError
from contextmri_core.io.dicom.writer import (
    DicomSeries, StudyContext, mr_sequence, new_uid, write_series,
)
from contextmri_core.io.raw.fastmri_writer import write_fastmri
from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
from contextmri_core.io.raw.reader import read_scan
from contextmri_core.synth.scan import SimConfig, simulate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CONFIG = SimConfig(matrix=32, num_slices=2, num_coils=4)
COMMENTS = {"guidance": 1.5, "steps": 40, "model": "contextmri-tiny", "seed": 7}
VARIANTS = {  # name -> (kind, method, fallback_reason)
    "magnitude": ("magnitude", "dds", None),
    "phase": ("phase", "dds", None),
    "uncertainty": ("uncertainty", "dds", None),
    "fallback": ("magnitude", "sense", "no GPU available"),
}


def coil_images(scan: RawScan) -> List[np.ndarray]:
    """(C, ny, nx) complex coil images of every slice."""
    return [ifftc(s.kspace, axes=(-2, -1)) for s in scan.slices]


def images_of(scan: RawScan, kind: str) -> List[np.ndarray]:
    """Simple real (ny, nx) images: RSS magnitude, phase of coil 0, or std over coils."""
    if kind == "phase":
        return [np.angle(c[0]) for c in coil_images(scan)]
    if kind == "uncertainty":
        return [np.abs(c).std(axis=0) for c in coil_images(scan)]
    return [np.sqrt((np.abs(c) ** 2).sum(axis=0)) for c in coil_images(scan)]


def series_of(scan: RawScan, variant: str, number: int = 3) -> DicomSeries:
    kind, method, reason = VARIANTS[variant]
    return DicomSeries(images=images_of(scan, kind), geometry=scan.geometry,
                       metadata=[s.metadata for s in scan.slices], series_number=number,
                       description="AX contextmri DDS", kind=kind, method=method,
                       fallback_reason=reason, comments=COMMENTS)


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Dict[str, RawScan]:
    """An AXT2 scan as ISMRMRD and an AXFLAIR scan (with TI) as fastMRI, read back."""
    out = tmp_path_factory.mktemp("scans")
    write_ismrmrd(out / "t2.h5", simulate(1, "AXT2", CONFIG))
    write_fastmri(out / "file_brain_AXFLAIR_sim00002.h5", simulate(2, "AXFLAIR", CONFIG))
    return {"ismrmrd": read_scan(out / "t2.h5"),
            "fastmri": read_scan(out / "file_brain_AXFLAIR_sim00002.h5")}


@pytest.fixture(scope="module")
def written(scans, tmp_path_factory) -> Dict[Tuple[str, str], List[Path]]:
    """(source, variant) -> the files of that series; one StudyContext per source."""
    out = tmp_path_factory.mktemp("dicom")
    files = {}
    for source, scan in scans.items():
        ctx = StudyContext.from_header(scan.header_xml, scan.fov_mm)
        for number, variant in enumerate(VARIANTS, start=1):
            series = series_of(scan, variant, number)
            files[source, variant] = write_series(out / source / variant, series, ctx)
    return files


def dciodvfy(path: Path) -> List[str]:
    """dciodvfy's output lines for ``path`` (it reports on stderr)."""
    assert shutil.which("dciodvfy"), "dciodvfy missing: apt-get install dicom3tools"
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(str(path))


def real_values(ds: pydicom.Dataset) -> np.ndarray:
    item = ds.RealWorldValueMappingSequence[0]
    return ds.pixel_array * item.RealWorldValueSlope + item.RealWorldValueIntercept


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("source", ["ismrmrd", "fastmri"])
def test_dciodvfy_finds_no_errors(written, source, variant):
    for path in written[source, variant]:
        lines = dciodvfy(path)
        for line in lines:
            print(f"{source}/{variant}/{path.name}: {line}")
        assert "MRImage" in [line.strip() for line in lines]
        assert not [line for line in lines if "Error" in line]


def test_a_header_without_patient_data_still_validates(scans, tmp_path):
    xml = (FIXTURES / "fastmri_brain_axflair_header.xml").read_bytes()
    ctx = StudyContext.from_header(xml, (220.0, 220.0, 5.0))
    assert ctx.frame_of_reference_uid.startswith("1.3.12.2.1107.5.2.18.41964")
    path = write_series(tmp_path, series_of(scans["fastmri"], "magnitude"), ctx)[0]
    lines = dciodvfy(path)
    print("\n".join(f"no-patient header: {line}" for line in lines))
    assert "MRImage" in lines and not [line for line in lines if "Error" in line]
    ds = read(path)
    assert ds.PatientName == "" and ds.StudyDate == "" and ds.StudyTime == "163520"


@pytest.mark.parametrize("source", ["ismrmrd", "fastmri"])
def test_mr_parameters_equal_the_header(scans, written, source):
    meta = parse_header(scans[source].header_xml)
    for path in written[source, "magnitude"]:
        ds = read(path)
        assert float(ds.RepetitionTime) == pytest.approx(meta.tr_ms)
        assert float(ds.EchoTime) == pytest.approx(meta.te_ms)
        assert float(ds.FlipAngle) == pytest.approx(meta.flip_angle_deg)
        assert float(ds.MagneticFieldStrength) == pytest.approx(meta.field_strength_t)
        assert float(ds.ImagingFrequency) == pytest.approx(42.577 * meta.field_strength_t,
                                                           rel=1e-3)
        if meta.ti_ms is None:
            assert "InversionTime" not in ds and "IR" not in ds.ScanningSequence
        else:
            assert float(ds.InversionTime) == pytest.approx(meta.ti_ms)
            assert "IR" in ds.ScanningSequence
    assert source != "fastmri" or meta.ti_ms is not None  # FLAIR covers the TI branch


@pytest.mark.parametrize("source", ["ismrmrd", "fastmri"])
def test_geometry_follows_the_slice_geometry(scans, written, source):
    scan = scans[source]
    fx, fy, fz = scan.fov_mm
    for path, geom, image in zip(written[source, "phase"], scan.geometry,
                                 images_of(scan, "phase")):
        ds = read(path)
        ny, nx = image.shape
        dx, dy = fx / nx, fy / ny
        read_dir, phase_dir = np.array(geom.read_dir), np.array(geom.phase_dir)
        corner = np.array(geom.position) - read_dir * dx * (nx // 2) - phase_dir * dy * (ny // 2)
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient],
                                   np.concatenate([read_dir, phase_dir]), atol=1e-6)
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], corner,
                                   atol=1e-4)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [dy, dx], rtol=1e-9)
        assert float(ds.SliceThickness) == pytest.approx(fz)
        assert float(ds.SliceLocation) == pytest.approx(
            float(np.dot(geom.position, geom.slice_dir)), abs=1e-4)
        assert (ds.Rows, ds.Columns) == (ny, nx)


@pytest.mark.parametrize("variant", ["magnitude", "phase", "uncertainty"])
def test_pixels_map_back_to_the_input(scans, written, variant):
    scan = scans["ismrmrd"]
    slopes = set()
    for path, image in zip(written["ismrmrd", variant], images_of(scan, VARIANTS[variant][0])):
        ds = read(path)
        slope = ds.RealWorldValueMappingSequence[0].RealWorldValueSlope
        slopes.add(slope)
        assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        np.testing.assert_allclose(real_values(ds), image, atol=slope * 0.5 + 1e-12)
        assert 0 < float(ds.WindowWidth) <= 65536
    assert len(slopes) == 1  # one scale for the whole series


def test_uids_are_unique_per_instance_and_series(written):
    for source in ("ismrmrd", "fastmri"):
        datasets = [read(p) for v in VARIANTS for p in written[source, v]]
        assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
        assert all(ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
                   for ds in datasets)
        assert len({ds.SeriesInstanceUID for ds in datasets}) == len(VARIANTS)
        assert len({ds.StudyInstanceUID for ds in datasets}) == 1
        assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
        for variant in VARIANTS:
            series = [read(p) for p in written[source, variant]]
            assert [int(ds.InstanceNumber) for ds in series] == [1, 2]
            assert [p.name for p in written[source, variant]] == ["IM_0001.dcm", "IM_0002.dcm"]


def test_file_meta_and_image_type(written):
    for variant in VARIANTS:
        ds = read(written["ismrmrd", variant][0])
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.Modality == "MR"
        assert ds.ImageType[0] == "DERIVED" and ds.ImageType[1] == "SECONDARY"
        assert ds.file_meta.ImplementationClassUID
    assert read(written["ismrmrd", "phase"][0]).ImageType[2:] == ["PHASE MAP", "P"]


def test_files_are_private_and_written_atomically(scans, tmp_path):
    ctx = StudyContext.from_header(scans["ismrmrd"].header_xml, scans["ismrmrd"].fov_mm)
    out = tmp_path / "new" / "series"
    series = series_of(scans["ismrmrd"], "magnitude")
    paths = write_series(out, series, ctx)
    paths = write_series(out, series, ctx)  # overwrites in place
    assert sorted(out.iterdir()) == paths  # no temporary files left
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    for d in (out, out.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_ai_and_fallback_series_are_labelled(written):
    ai = read(written["ismrmrd", "magnitude"][1])
    assert ai.SeriesDescription == "AX contextmri DDS"
    assert "contextmri AI" in ai.DerivationDescription and "FALLBACK" not in ai.ImageComments
    fb = read(written["ismrmrd", "fallback"][1])
    assert fb.SeriesDescription.endswith(" FALLBACK sense")
    assert fb.DerivationDescription.startswith("FALLBACK") and "sense" in fb.DerivationDescription
    comments = json.loads(fb.ImageComments)
    assert comments["method"] == "sense" and comments["fallback_reason"] == "no GPU available"


@pytest.mark.parametrize("source", ["ismrmrd", "fastmri"])
def test_image_comments_carry_prompt_and_settings(scans, written, source):
    for path, sl in zip(written[source, "magnitude"], scans[source].slices):
        comments = json.loads(read(path).ImageComments)
        assert comments["prompt"] == build_prompt(sl.metadata)
        assert {k: comments[k] for k in COMMENTS} == COMMENTS
        assert comments["method"] == "dds" and comments["fallback_reason"] is None


def context_with_patient(scan: RawScan, name: str, pid: str) -> StudyContext:
    xml = scan.header_xml
    original = StudyContext.from_header(xml, scan.fov_mm).study
    xml = xml.replace(original.patient_name, name).replace(original.patient_id, pid)
    return StudyContext.from_header(xml, scan.fov_mm)


def test_a_non_ascii_patient_name_round_trips(scans, tmp_path):
    ctx = context_with_patient(scans["ismrmrd"], "Müller^Jörg", "ÅSA-77")
    path = write_series(tmp_path, series_of(scans["ismrmrd"], "magnitude"), ctx)[0]
    ds = read(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Müller^Jörg" and ds.PatientID == "ÅSA-77"
    assert ds.PatientName.family_name == "Müller" and ds.PatientName.given_name == "Jörg"
    assert "Müller^Jörg".encode("utf-8") in path.read_bytes()
    assert not [line for line in dciodvfy(path) if "Error" in line]


def test_patient_name_and_id_are_never_logged(scans, tmp_path, caplog):
    ctx = context_with_patient(scans["ismrmrd"], "Secret^Person", "PID-SECRET-123")
    caplog.set_level(logging.DEBUG)
    long_desc = dataclasses.replace(series_of(scans["ismrmrd"], "fallback"),
                                    description="x" * 80)
    write_series(tmp_path / "a", long_desc, ctx)
    write_series(tmp_path / "b", series_of(scans["ismrmrd"], "phase"), ctx)
    assert caplog.records, "the writer logs what it wrote"
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "Secret" not in text and "PID-SECRET" not in text


def test_header_study_uid_is_reused_and_invalid_ones_replaced(scans):
    xml = scans["ismrmrd"].header_xml
    good = xml.replace("</studyID>", "</studyID><studyInstanceUID>1.2.840.99.1"
                       "</studyInstanceUID>")
    bad = xml.replace("</studyID>", "</studyID><studyInstanceUID>1.02.x</studyInstanceUID>")
    assert StudyContext.from_header(good, (1, 1, 1)).study_instance_uid == "1.2.840.99.1"
    uid = StudyContext.from_header(bad, (1, 1, 1)).study_instance_uid
    assert uid != "1.02.x" and len(uid) <= 64
    assert new_uid() != new_uid()


def test_invalid_series_are_rejected(scans):
    series = series_of(scans["ismrmrd"], "magnitude")
    with pytest.raises(ShapeError):
        dataclasses.replace(series, geometry=series.geometry[:1])
    with pytest.raises(ShapeError):
        dataclasses.replace(series, images=[im.astype(np.complex64) for im in series.images])
    with pytest.raises(ConfigError, match="kind"):
        dataclasses.replace(series, kind="complex")
    with pytest.raises(ConfigError, match="method"):
        dataclasses.replace(series, fallback_reason="x")  # a fallback cannot be dds


@pytest.mark.parametrize("sequence, ti, scanning, variant", [
    ("TurboSpinEcho", None, ["SE"], ["SK"]),
    ("SpinEcho", None, ["SE"], ["NONE"]),
    ("TurboSpinEcho", 2500.0, ["SE", "IR"], ["SK", "MP"]),
    ("GradientEcho", None, ["GR"], ["NONE"]),
    (None, None, ["RM"], ["NONE"]),
    (None, 900.0, ["IR"], ["MP"]),
])
def test_scanning_sequence_from_metadata(sequence, ti, scanning, variant):
    assert mr_sequence(ScanMetadata(sequence=sequence, ti_ms=ti)) == (scanning, variant)


def test_non_finite_and_negative_pixels_are_clipped(scans, tmp_path):
    scan = scans["ismrmrd"]
    series = series_of(scan, "magnitude")
    images = [im.copy() for im in series.images]
    images[0][0, 0], images[0][0, 1] = np.nan, -5.0
    ctx = StudyContext.from_header(scan.header_xml, scan.fov_mm)
    path = write_series(tmp_path, dataclasses.replace(series, images=images), ctx)[0]
    pixels = read(path).pixel_array
    assert pixels[0, 0] == 0 and pixels[0, 1] == 0 and os.path.getsize(path) > 2048
