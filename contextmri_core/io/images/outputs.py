"""Reconstructed series -> ISMRMRD image .h5, NIfTI and PNG previews (DICOM: ``io.dicom.writer``).

A series is the ``DicomSeries`` the DICOM writer takes (one real ``(ny, nx)`` image per slice,
their geometry and metadata), so every output format describes the same images. Files carry
patient data and are created readable by the owner only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence, Tuple

import numpy as np

from contextmri_core.data.geometry import SliceGeometry, Vec3
from contextmri_core.io.dicom.writer import DicomSeries
from contextmri_core.io.images.png import grid_sheet

log = logging.getLogger(__name__)
IMTYPE = {"magnitude": 1, "phase": 2, "uncertainty": 1}


def private_file(path: Path) -> Path:
    """Create (or truncate) ``path`` with mode 0600 before anything is written into it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)
    return path


def series_stem(series: DicomSeries) -> str:
    """File-name stem of a series, e.g. ``01_dds_magnitude``."""
    return f"{series.series_number:02d}_{series.method}_{series.kind}"


def write_ismrmrd_images(path: Path, series_list: Sequence[DicomSeries], header_xml: str,
                         fov_mm: Vec3) -> Path:
    """All series into one ISMRMRD .h5 (group ``dataset``; images under ``image_<NN>``) with
    the scan's header, geometry and meta attributes (method, prompt, ...)."""
    import ismrmrd

    from contextmri_core.io.mrd.images import image_header, meta_xml

    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if Path(path).exists():
        os.remove(path)  # ismrmrd creates the file itself (and would append to an old one)
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    try:
        dset.write_xml_header(header_xml.encode("utf-8"))
        for series in series_list:
            for i, (img, geom, meta) in enumerate(zip(series.images, series.geometry,
                                                      series.metadata)):
                head = image_header(geom, int(meta.slice_index or i), fov_mm,
                                    series.series_number, i + 1, IMTYPE.get(series.kind, 1))
                attrs = {"method": series.method, "kind": series.kind,
                         "prompt": series.prompt_of(meta), "fallback_reason": series.fallback_reason,
                         **dict(series.comments)}
                dset.append_image(f"image_{series.series_number:02d}",
                                  _image(head, meta_xml(attrs), np.asarray(img, np.float32)))
    finally:
        dset.close()
    os.chmod(path, 0o600)
    return Path(path)


def _image(head: Any, attributes: str, data: np.ndarray) -> Any:
    """An ``ismrmrd.Image`` holding ``data (ny, nx)`` float32 (works on ismrmrd 1.14 and 1.15)."""
    import ismrmrd

    img = ismrmrd.Image.from_array(data[np.newaxis, np.newaxis], transpose=False)
    for name in ("version", "measurement_uid", "field_of_view", "position", "read_dir",
                 "phase_dir", "slice_dir", "patient_table_position", "slice", "average",
                 "contrast", "phase", "repetition", "set", "acquisition_time_stamp",
                 "physiology_time_stamp", "image_series_index", "image_index", "image_type"):
        setattr(img, name, getattr(head, name))
    img.attribute_string = attributes
    return img


def nifti_affine(geometry: Sequence[SliceGeometry], shape: Tuple[int, int],
                 fov_mm: Vec3) -> np.ndarray:
    """4x4 RAS affine of a volume indexed ``[column (read), row (phase), slice]``.

    Pixel ``(i, j)`` of slice ``k`` sits at ``position_k + (i - nx//2) dx read +
    (j - ny//2) dy phase`` (LPS, mm); the slice step is the distance between the first two
    slice centres along ``slice_dir`` (the slice thickness for a single slice).
    """
    ny, nx = shape
    g0 = geometry[0]
    read, phase, normal = (np.asarray(v, float) for v in (g0.read_dir, g0.phase_dir, g0.slice_dir))
    dx, dy = fov_mm[0] / nx, fov_mm[1] / ny
    step = fov_mm[2] or 1.0
    if len(geometry) > 1:
        step = float(np.dot(np.subtract(geometry[1].position, g0.position), normal)) or step
    origin = np.asarray(g0.position, float) - (nx // 2) * dx * read - (ny // 2) * dy * phase
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = dx * read, dy * phase, step * normal, origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS


def write_nifti(path: Path, series: DicomSeries, fov_mm: Vec3) -> Path:
    """One series as a NIfTI-1 volume ``(nx, ny, slices)`` float32 (``.nii`` or ``.nii.gz``)."""
    import nibabel as nib

    stack = np.stack([np.asarray(im, np.float32) for im in series.images])  # (S, ny, nx)
    volume = np.ascontiguousarray(np.transpose(stack, (2, 1, 0)))
    img = nib.Nifti1Image(volume, nifti_affine(series.geometry, stack.shape[1:], fov_mm))
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = f"contextmri {series.method} {series.kind}"[:79].encode()
    nib.save(img, str(private_file(Path(path))))
    os.chmod(path, 0o600)
    return Path(path)


def sheet_title(series: DicomSeries) -> str:
    """Title of a contact sheet: series number and protocol, then the method and kind,
    e.g. ``01 AX T2 | DDS magnitude`` or ``11 AX T2 | SENSE magnitude FALLBACK``."""
    scan = series.protocol or series.description
    return (f"{series.series_number:02d} {scan} | {series.method.upper()} {series.kind}"
            + (" FALLBACK" if series.fallback_reason else ""))


def write_png(path: Path, series: DicomSeries) -> Path:
    """Contact sheet of one series: its slices in a grid, one shared window, titled."""
    stack = np.stack([np.asarray(im, np.float32) for im in series.images])
    private_file(Path(path))
    out = grid_sheet(path, stack, sheet_title(series))
    os.chmod(out, 0o600)
    return out
