"""ISMRMRD v1 / MRD .h5 -> ``RawScan`` (Cartesian 2D, one encoding space).

The acquisition table is read with h5py in two vectorised reads (the compound ``head`` field
and the vlen float32 ``data`` field, interleaved re/im, (active_channels, number_of_samples)
per line) rather than one ``ismrmrd.Dataset.read_acquisition`` call per line; the assembly
(noise, ACS, partial Fourier, oversampling) is the pure ``contextmri_core.data.assembly``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Union

import h5py
import numpy as np

from contextmri_core.data.assembly import AcqRecord, assemble_slices, is_imaging, is_noise
from contextmri_core.data.geometry import SliceGeometry, vec3
from contextmri_core.data.grid_limits import GridLimits
from contextmri_core.data.encoding import EncodingInfo, parse_encoding
from contextmri_core.data.header import parse_header
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.scan import RawScan
from contextmri_core.errors import HeaderError, InputFileError
from contextmri_core.io.raw.rawscan import build_raw_scan

if TYPE_CHECKING:
    import ismrmrd


PathLike = Union[str, Path]


def open_h5(path: PathLike) -> h5py.File:
    """Open ``path`` read-only; ``InputFileError`` if it is missing or not HDF5."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such file")
    if p.stat().st_size == 0:
        raise InputFileError(p, "empty file (0 bytes)")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise InputFileError(p, f"not an HDF5 file ({exc})") from exc


def _group(f: h5py.File, path: PathLike, name: str) -> h5py.Group:
    group = f.get(name)
    if not isinstance(group, h5py.Group):
        raise InputFileError(path, f"no /{name} group: not an ISMRMRD file")
    return group


def read_header_xml(group: h5py.Group, path: PathLike) -> str:
    """The ``xml`` dataset of an ISMRMRD group as text; ``InputFileError`` if missing/empty."""
    node = group.get("xml")
    if not isinstance(node, h5py.Dataset) or node.size == 0:
        raise InputFileError(path, f"no XML header ({group.name}/xml)")
    value = node[()] if node.shape == () else node[0]
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    if not text.strip():
        raise InputFileError(path, f"empty XML header ({group.name}/xml)")
    return text


def _table(group: h5py.Group, path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """(head structured array, object array of float32 payloads) of ``data``."""
    node = group.get("data")
    if not isinstance(node, h5py.Dataset) or node.size == 0:
        raise InputFileError(path, f"no acquisitions ({group.name}/data is missing or empty)")
    names = node.dtype.names or ()
    if "head" not in names or "data" not in names:
        raise InputFileError(path, f"{group.name}/data is not an ISMRMRD acquisition table "
                                   f"(fields {names})")
    base = h5py.check_vlen_dtype(node.dtype["data"])
    if base is None or np.dtype(base) != np.float32:
        raise InputFileError(path, f"acquisition data must be vlen float32, got {base}")
    return node["head"], node["data"]


def _payload(raw: np.ndarray, coils: int, samples: int, i: int, path: PathLike) -> np.ndarray:
    """Interleaved float32 -> (coils, samples) complex64."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.size != 2 * coils * samples:
        raise InputFileError(path, f"acquisition {i}: {raw.size} floats, expected "
                                   f"2 x {coils} channels x {samples} samples")
    return raw.view(np.complex64).reshape(coils, samples)


def records_from_table(head: np.ndarray, payload: np.ndarray, path: PathLike) -> List[AcqRecord]:
    """ISMRMRD ``head`` structured array + payloads -> ``AcqRecord`` list (file order)."""
    idx = head["idx"]
    cols = {k: head[k].astype(np.int64) for k in (
        "flags", "active_channels", "number_of_samples", "center_sample",
        "discard_pre", "discard_post")}
    ids = {k: idx[k].astype(np.int64) for k in (
        "kspace_encode_step_1", "kspace_encode_step_2", "slice", "repetition", "average")}
    flags = head["flags"].astype(np.uint64)
    return [
        AcqRecord(
            flags=int(flags[i]), e1=int(ids["kspace_encode_step_1"][i]),
            e2=int(ids["kspace_encode_step_2"][i]), slice=int(ids["slice"][i]),
            center_sample=int(cols["center_sample"][i]), discard_pre=int(cols["discard_pre"][i]),
            discard_post=int(cols["discard_post"][i]),
            data=_payload(payload[i], int(cols["active_channels"][i]),
                          int(cols["number_of_samples"][i]), i, path),
            repetition=int(ids["repetition"][i]), average=int(ids["average"][i]),
            slice_dir=vec3(head["slice_dir"][i]))
        for i in range(head.shape[0])
    ]


def record_from_acquisition(acq: "ismrmrd.Acquisition") -> AcqRecord:
    """One ``ismrmrd.Acquisition`` (e.g. from a live stream) -> ``AcqRecord``."""
    idx = acq.idx
    return AcqRecord(
        flags=int(acq.flags), e1=int(idx.kspace_encode_step_1), e2=int(idx.kspace_encode_step_2),
        slice=int(idx.slice), center_sample=int(acq.center_sample),
        discard_pre=int(acq.discard_pre), discard_post=int(acq.discard_post),
        data=np.asarray(acq.data, dtype=np.complex64), repetition=int(idx.repetition),
        average=int(idx.average), slice_dir=vec3(acq.slice_dir))


def _encoding(xml: str, path: PathLike) -> EncodingInfo:
    """``EncodingInfo``, checked: Cartesian 2D only."""
    try:
        enc = parse_encoding(xml)
    except HeaderError as exc:
        raise InputFileError(path, f"bad ISMRMRD header: {exc}") from exc
    _check_encoding(enc, path)
    return enc


def _check_encoding(enc: EncodingInfo, path: PathLike) -> None:
    if not enc.is_cartesian:
        raise InputFileError(path, f"trajectory {enc.trajectory!r} is not Cartesian; "
                                   "only Cartesian 2D scans are supported")
    e2 = enc.limit("kspace_encoding_step_2")
    if (enc.encoded_matrix and enc.encoded_matrix[2] > 1) or (e2 and e2.count > 1):
        raise InputFileError(path, "3D encoding (kspace_encoding_step_2 > 1) is not supported")


def geometry_from_table(head: np.ndarray) -> Dict[int, SliceGeometry]:
    """Slice index -> geometry of its first imaging line (file order) in a ``head`` table."""
    out: Dict[int, SliceGeometry] = {}
    for row in head:
        flags, s = int(row["flags"]), int(row["idx"]["slice"])
        if s in out or not is_imaging(flags) or is_noise(flags):
            continue
        idx = row["idx"]
        out[s] = SliceGeometry(
            position=vec3(row["position"]), read_dir=vec3(row["read_dir"]),
            phase_dir=vec3(row["phase_dir"]), slice_dir=vec3(row["slice_dir"]),
            patient_table_position=vec3(row["patient_table_position"]),
            measurement_uid=int(row["measurement_uid"]),
            acquisition_time_stamp=int(row["acquisition_time_stamp"]),
            physiology_time_stamp=tuple(int(v) for v in row["physiology_time_stamp"][:3]),
            average=int(idx["average"]), contrast=int(idx["contrast"]), phase=int(idx["phase"]),
            repetition=int(idx["repetition"]), set=int(idx["set"]))
    return out


def _metadata(xml: str, path: PathLike, anatomy_override: Optional[str]) -> ScanMetadata:
    try:
        return parse_header(xml, filename=Path(path).name, anatomy_override=anatomy_override)
    except HeaderError as exc:
        raise InputFileError(path, f"bad ISMRMRD header: {exc}") from exc


def read_ismrmrd(path: PathLike, *, anatomy_override: Optional[str] = None,
                 dataset: str = "dataset", repetition: Optional[int] = None,
                 limits: GridLimits = GridLimits()) -> RawScan:
    """Read a Cartesian 2D ISMRMRD file into a ``RawScan`` (slices in ascending order)."""
    with open_h5(path) as f:
        group = _group(f, path, dataset)
        xml = read_header_xml(group, path)
        meta = _metadata(xml, path, anatomy_override)
        enc = _encoding(xml, path)
        head, payload = _table(group, path)
    records = records_from_table(head, payload, path)
    try:
        slices, noise = assemble_slices(records, enc, meta, repetition=repetition, limits=limits)
    except ValueError as exc:
        raise InputFileError(path, str(exc)) from exc
    return build_raw_scan(path, slices, meta, xml, enc, noise, enc.readout_oversampling,
                          sum(1 for r in records if is_noise(r.flags)), geometry_from_table(head))
