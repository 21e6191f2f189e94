"""fastMRI .h5 -> ``RawScan``.

fastMRI layout: ``kspace`` (slices, coils, RO, E1) complex64 (single-coil files: (slices, RO,
E1)) with the readout usually 2x oversampled, ``ismrmrd_header`` (XML bytes), attributes
``acquisition``, ``max``, ``norm``, ``patient_id``; test/challenge files add ``mask`` (E1,) and
attributes ``acceleration`` and ``num_low_frequency``.

Each slice becomes (C, E1, RO) with the oversampling removed to the header's recon x. The mask
comes from ``mask`` or, without it, from the rows holding non-zero samples. fastMRI flags no
calibration lines: ``acs`` is None and ``acs_rows`` is the detected contiguous centre block
(the ACS lines are imaging lines, read them from ``kspace``). Noise is None.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import h5py
import numpy as np

from contextmri_core.data.assembly import (detect_acs_rows, recon_columns,
                                           remove_readout_oversampling)
from contextmri_core.data.encoding import EncodingInfo, parse_encoding
from contextmri_core.data.grid_limits import GridLimits, ReceivedData, ScanTooLarge, check_grid
from contextmri_core.data.header import parse_header
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.scan import RawScan, SliceData
from contextmri_core.errors import HeaderError, InputFileError
from contextmri_core.io.raw.rawscan import build_raw_scan
from contextmri_core.io.raw.ismrmrd_reader import open_h5


PathLike = Union[str, Path]
log = logging.getLogger(__name__)


def _attr_str(f: h5py.File, name: str) -> Optional[str]:
    value = f.attrs.get(name)
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _kspace(f: h5py.File, path: PathLike) -> h5py.Dataset:
    node = f.get("kspace")
    if not isinstance(node, h5py.Dataset):
        raise InputFileError(path, "no 'kspace' dataset: not a fastMRI file")
    if node.dtype.kind != "c":
        raise InputFileError(path, f"'kspace' must be complex (complex64), got {node.dtype}")
    if node.ndim not in (3, 4) or node.size == 0:
        raise InputFileError(path, f"'kspace' must be (slices, coils, RO, E1) or (slices, RO, E1),"
                                   f" got shape {node.shape}")
    return node


def _header(f: h5py.File, path: PathLike) -> str:
    node = f.get("ismrmrd_header")
    if not isinstance(node, h5py.Dataset):
        raise InputFileError(path, "no 'ismrmrd_header' dataset")
    value = node[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    if not text.strip():
        raise InputFileError(path, "empty 'ismrmrd_header'")
    return text


def _row_mask(f: h5py.File, kspace: h5py.Dataset, path: PathLike) -> Optional[np.ndarray]:
    """(E1,) bool from the ``mask`` dataset, or None when the file has none."""
    node = f.get("mask")
    if node is None:
        return None
    mask = np.asarray(node[()]).reshape(-1)
    if mask.size != kspace.shape[-1]:
        raise InputFileError(path, f"'mask' has {mask.size} entries, k-space has "
                                   f"{kspace.shape[-1]} phase-encode lines")
    return mask.astype(bool)


def _slice(raw: np.ndarray, rows: Optional[np.ndarray], recon_x: int,
           meta: ScanMetadata) -> SliceData:
    """(C, RO, E1) fastMRI slice -> SliceData (C, E1, recon RO)."""
    k = np.asarray(raw, dtype=np.complex64)
    if k.ndim == 2:
        k = k[None]
    k = np.ascontiguousarray(k.transpose(0, 2, 1))
    bad = ~np.isfinite(k).all(axis=0)  # (E1, RO) samples not finite in some coil
    k[:, bad] = 0
    if rows is None:
        rows = np.abs(k).max(axis=(0, 2)) > 0
    ro = k.shape[-1]
    k = remove_readout_oversampling(k, recon_x)
    mask = np.repeat(rows[:, None].astype(np.float32), k.shape[-1], axis=1)
    nonfinite = int((bad & rows[:, None]).sum())
    if nonfinite:
        mask[bad[:, recon_columns(ro, k.shape[-1])]] = 0
        log.warning("slice %s: %d non-finite k-space samples treated as not acquired (masked)",
                    meta.slice_index, nonfinite)
    k = (k * mask).astype(np.complex64)
    return SliceData(kspace=k, mask=mask, metadata=meta, acs=None, acs_rows=detect_acs_rows(rows),
                     nonfinite_samples=nonfinite)


def _metadata(f: h5py.File, xml: str, path: PathLike,
              anatomy_override: Optional[str]) -> ScanMetadata:
    try:
        return parse_header(xml, acquisition=_attr_str(f, "acquisition"),
                            filename=Path(path).name, anatomy_override=anatomy_override)
    except HeaderError as exc:
        raise InputFileError(path, f"bad ISMRMRD header: {exc}") from exc


def _encoding(xml: str, path: PathLike) -> EncodingInfo:
    try:
        return parse_encoding(xml)
    except HeaderError as exc:
        raise InputFileError(path, f"bad ISMRMRD header: {exc}") from exc


def _check_size(kspace: h5py.Dataset, limits: GridLimits, path: PathLike) -> None:
    """The dataset's own shape against ``limits`` (a sparse HDF5 dataset may claim a shape
    far larger than the file)."""
    shape = kspace.shape
    coils = shape[1] if kspace.ndim == 4 else 1
    got = ReceivedData(max_lines_per_slice=shape[-1], max_samples=shape[-2], coils=coils,
                       slices=shape[0])
    try:
        check_grid(shape[-1], shape[-2], got, limits)
    except ScanTooLarge as exc:
        raise InputFileError(path, str(exc).replace("encodedSpace", "kspace")) from None


def read_fastmri(path: PathLike, *, anatomy_override: Optional[str] = None,
                 limits: GridLimits = GridLimits()) -> RawScan:
    """Read a fastMRI .h5 file into a ``RawScan`` (slice i of the file is slice index i);
    ``InputFileError`` when the k-space is larger than ``limits`` allow."""
    with open_h5(path) as f:
        kspace = _kspace(f, path)
        _check_size(kspace, limits, path)
        xml = _header(f, path)
        meta = _metadata(f, xml, path, anatomy_override)
        enc = _encoding(xml, path)
        rows = _row_mask(f, kspace, path)
        ro = kspace.shape[-2]
        recon_x = min(enc.recon_matrix[0], ro) if enc.readout_oversampled else ro  # type: ignore
        slices = tuple(_slice(kspace[i], rows, recon_x, meta.for_slice(i))
                       for i in range(kspace.shape[0]))
    return build_raw_scan(path, slices, meta, xml, enc, None, ro / recon_x)
