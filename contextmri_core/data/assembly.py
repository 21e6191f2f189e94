"""Acquisitions -> Cartesian k-space slices: pure predicates and one assembly function.

Neutral on purpose (numpy only, no ismrmrd/h5py): the file readers build ``AcqRecord``s from an
HDF5 table, a gadget builds them from a live stream; both call ``assemble_slices``.

Rules (ISMRMRD v1 semantics):

* noise acquisitions (``ACQ_IS_NOISE_MEASUREMENT``) are concatenated into ``noise`` (C, N);
* separate ACS (``ACQ_IS_PARALLEL_CALIBRATION``) go to ``acs`` only, embedded ACS
  (``..._AND_IMAGING``) to ``acs`` and to the imaging k-space; other non-imaging lines
  (navigators, phase correction, dummy scans, feedback, ...) are skipped;
* row of a line: ``e1 - center_e1 + E1 // 2`` (``center_e1`` from ``encodingLimits``), so a
  partial-Fourier scan leaves its missing edge rows zero with mask 0;
* readout: ``discard_pre``/``discard_post`` samples are dropped, raw sample ``s`` lands in
  column ``s - center_sample + RO_enc // 2`` (asymmetric echo leaves zeros, mask 0);
  ``center_sample == 0`` is read as "not set" (N // 2: a symmetric echo);
  ``ACQ_IS_REVERSE`` lines are flipped along the readout first;
* repeated acquisitions of the same row (``average`` index, or re-acquisitions) are averaged
  sample-wise; *repetitions* are distinct time frames and are not mixed: one repetition is
  assembled (the lowest present unless asked for). The ``ismrmrd_generate_cartesian_shepp_logan
  -a 2`` fixture writes two repetitions with complementary (odd/even) line sets; averaging them
  would turn an R=2 scan into a fully-sampled one;
* readout oversampling (encoded x > recon x with encoded FOV x > recon FOV x) is removed by a centred IFFT along RO, a centred
  crop to recon x and an FFT back (orthonormal, ``fftshift(fft(ifftshift(x)))``);
* slices are grouped by ``idx.slice`` and returned in ascending order; a slice's
  ``metadata.slice_plane`` is the plane of its first imaging line's ``slice_dir``;
* non-finite samples (NaN, inf: a corrupt line) are counted, set to zero and left out of the
  mask (treated as not acquired); noise acquisitions holding any are dropped;
* the grid the header asks for is checked against the data received and ``GridLimits``
  before it is allocated (``contextmri_core.data.grid_limits``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from contextmri_core.data.encoding import EncodingInfo
from contextmri_core.data.fftnp import crop_center, fftc, ifftc
from contextmri_core.data.geometry import slice_plane
from contextmri_core.data.grid_limits import GridLimits, ReceivedData, check_grid
from contextmri_core.data.grid_limits import ScanTooLarge  # noqa: F401 - re-exported
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.scan import SliceData

log = logging.getLogger(__name__)

# ISMRMRD flag numbers (flag n is bit n - 1 of ``AcquisitionHeader.flags``).
ACQ_IS_NOISE_MEASUREMENT = 19
ACQ_IS_PARALLEL_CALIBRATION = 20
ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING = 21
ACQ_IS_REVERSE = 22
ACQ_IS_NAVIGATION_DATA = 23
ACQ_IS_PHASECORR_DATA = 24
ACQ_IS_HPFEEDBACK_DATA = 26
ACQ_IS_DUMMYSCAN_DATA = 27
ACQ_IS_RTFEEDBACK_DATA = 28
ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA = 29
ACQ_IS_PHASE_STABILIZATION_REFERENCE = 30
ACQ_IS_PHASE_STABILIZATION = 31

#: Flags of lines that carry no imaging k-space (besides noise and separate ACS).
NON_IMAGING_FLAGS: Tuple[int, ...] = (
    ACQ_IS_NAVIGATION_DATA, ACQ_IS_PHASECORR_DATA, ACQ_IS_HPFEEDBACK_DATA, ACQ_IS_DUMMYSCAN_DATA,
    ACQ_IS_RTFEEDBACK_DATA, ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ACQ_IS_PHASE_STABILIZATION_REFERENCE, ACQ_IS_PHASE_STABILIZATION,
)


@dataclass(frozen=True)
class AcqRecord:
    """One readout line: header fields the assembly needs and ``data`` (C, N) complex64."""

    flags: int
    e1: int
    e2: int
    slice: int
    center_sample: int
    discard_pre: int
    discard_post: int
    data: np.ndarray
    repetition: int = 0
    average: int = 0
    slice_dir: Optional[Tuple[float, float, float]] = None  # LPS slice normal, when known


def flag_set(flags: int, flag: int) -> bool:
    """True if ISMRMRD flag number ``flag`` (1-based) is set in ``flags``."""
    return bool((int(flags) >> (flag - 1)) & 1)


def is_noise(flags: int) -> bool:
    return flag_set(flags, ACQ_IS_NOISE_MEASUREMENT)


def is_parallel_calibration(flags: int) -> bool:
    """Separate ACS line (calibration only, not part of the image)."""
    return flag_set(flags, ACQ_IS_PARALLEL_CALIBRATION)


def is_calibration_and_imaging(flags: int) -> bool:
    """Embedded ACS line (calibration and imaging)."""
    return flag_set(flags, ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)


def is_reverse(flags: int) -> bool:
    return flag_set(flags, ACQ_IS_REVERSE)


def is_navigation(flags: int) -> bool:
    return flag_set(flags, ACQ_IS_NAVIGATION_DATA)


def is_phasecorr(flags: int) -> bool:
    return flag_set(flags, ACQ_IS_PHASECORR_DATA)


def is_dummyscan(flags: int) -> bool:
    return flag_set(flags, ACQ_IS_DUMMYSCAN_DATA)


def is_non_imaging(flags: int) -> bool:
    """Navigator, phase correction, dummy scan, feedback, ... (skipped by the assembly)."""
    return any(flag_set(flags, f) for f in NON_IMAGING_FLAGS)


def is_calibration(flags: int) -> bool:
    """Line that belongs in the ACS buffer (separate or embedded)."""
    return not is_noise(flags) and not is_non_imaging(flags) and (
        is_parallel_calibration(flags) or is_calibration_and_imaging(flags))


def is_imaging(flags: int) -> bool:
    """Line that belongs in the imaging k-space (plain or embedded ACS)."""
    if is_noise(flags) or is_non_imaging(flags):
        return False
    return not is_parallel_calibration(flags) or is_calibration_and_imaging(flags)


def remove_readout_oversampling(kspace: np.ndarray, recon_x: int) -> np.ndarray:
    """(..., RO_enc) k-space -> (..., recon_x): centred IFFT, crop the centre, FFT back."""
    if recon_x >= kspace.shape[-1]:
        return kspace.astype(np.complex64)
    image = crop_center(ifftc(kspace, axes=(-1,)), recon_x)
    return fftc(image, axes=(-1,)).astype(np.complex64)


def recon_columns(ro_enc: int, recon_x: int) -> np.ndarray:
    """Encoded column that each recon column's k-space position came from (same k, coarser step)."""
    j = np.arange(recon_x) - recon_x // 2
    return np.clip(np.round(j * ro_enc / recon_x).astype(int) + ro_enc // 2, 0, ro_enc - 1)


def place_readout(rec: AcqRecord, ro: int) -> Tuple[np.ndarray, np.ndarray]:
    """One line on the encoded readout grid: ((C, ro) complex64, (ro,) bool coverage).

    Samples that are not finite in any coil are zeroed in every coil and not covered."""
    data = np.asarray(rec.data)
    n = data.shape[-1]
    if is_reverse(rec.flags):
        data = data[:, ::-1]
    centre = rec.center_sample if rec.center_sample > 0 else n // 2
    keep = np.arange(rec.discard_pre, n - rec.discard_post)
    cols = keep - centre + ro // 2
    ok = (cols >= 0) & (cols < ro)
    if not ok.all():
        log.warning("e1=%d: %d readout samples fall outside the %d-sample grid; dropped",
                    rec.e1, int((~ok).sum()), ro)
    line = np.zeros((data.shape[0], ro), dtype=np.complex64)
    cover = np.zeros(ro, dtype=bool)
    line[:, cols[ok]] = data[:, keep[ok]]
    cover[cols[ok]] = True
    bad = ~np.isfinite(line).all(axis=0)
    if bad.any():
        line[:, bad] = 0
        cover[bad] = False
    return line, cover


class _Grid:
    """Sample-wise running sum and count on one (C, E1, RO) grid (for averaging)."""

    def __init__(self, coils: int, e1: int, ro: int) -> None:
        self.total = np.zeros((coils, e1, ro), dtype=np.complex64)
        self.count = np.zeros((e1, ro), dtype=np.int32)

    def add(self, row: int, line: np.ndarray, cover: np.ndarray) -> None:
        self.total[:, row, :] += line
        self.count[row] += cover

    def finish(self, recon_x: int) -> Tuple[np.ndarray, np.ndarray]:
        """(kspace (C, E1, recon_x) complex64, coverage (E1, recon_x) bool)."""
        kspace = self.total / np.maximum(self.count, 1)
        cover = self.count > 0
        if recon_x < kspace.shape[-1]:
            cover = cover[:, recon_columns(kspace.shape[-1], recon_x)]
            kspace = remove_readout_oversampling(kspace, recon_x)
        return (kspace * cover).astype(np.complex64), cover


def grid_shape(encoding: EncodingInfo, records: Sequence[AcqRecord]) -> Tuple[int, int, int, int]:
    """(E1, RO_enc, recon_x, center_e1) from the header, falling back on the records."""
    lim = encoding.limit("kspace_encoding_step_1")
    if encoding.encoded_matrix is not None:
        e1, ro = encoding.encoded_matrix[1], encoding.encoded_matrix[0]
    else:
        e1 = lim.maximum + 1 if lim else max(r.e1 for r in records) + 1
        ro = max(r.data.shape[-1] - r.discard_pre - r.discard_post for r in records)
    recon_x = encoding.recon_matrix[0] if encoding.readout_oversampled else ro  # type: ignore
    center = lim.center if lim is not None else e1 // 2
    return e1, ro, min(recon_x, ro), center


def _select_repetition(records: Sequence[AcqRecord], repetition: Optional[int]) -> int:
    reps = sorted({r.repetition for r in records})
    chosen = reps[0] if repetition is None else int(repetition)
    if chosen not in reps:
        raise ValueError(f"repetition {chosen} not in the data (found {reps})")
    if len(reps) > 1:
        log.info("%d repetitions found; assembling repetition %d only", len(reps), chosen)
    return chosen


def _collect_noise(noise: List[np.ndarray], coils: int) -> Optional[np.ndarray]:
    usable = [n for n in noise if n.shape[0] == coils]
    if len(usable) < len(noise):
        log.warning("%d noise acquisitions with a channel count other than %d ignored",
                    len(noise) - len(usable), coils)
    finite = [n for n in usable if np.isfinite(n).all()]
    if len(finite) < len(usable):
        log.warning("%d noise acquisitions with non-finite samples ignored",
                    len(usable) - len(finite))
        usable = finite
    return np.concatenate(usable, axis=1).astype(np.complex64) if usable else None


def _assemble_one(recs: Sequence[AcqRecord], shape: Tuple[int, int, int, int],
                  meta: ScanMetadata) -> SliceData:
    e1, ro, recon_x, center = shape
    coils = recs[0].data.shape[0]
    image, calib = _Grid(coils, e1, ro), _Grid(coils, e1, ro)
    nonfinite, holes = 0, []
    for rec in recs:
        row = rec.e1 - center + e1 // 2
        if not 0 <= row < e1:
            raise ValueError(f"line e1={rec.e1} lands outside the {e1}-row grid "
                             f"(centre {center})")
        line, cover = place_readout(rec, ro)
        bad = _count_nonfinite(rec)
        if is_imaging(rec.flags):
            nonfinite += bad
            image.add(row, line, cover)
        if is_calibration(rec.flags):
            calib.add(row, line, cover)
            if bad:
                holes.append(row)  # a calibration row with a hole: not used to calibrate
    kspace, mask = image.finish(recon_x)
    acs, acs_rows = None, None
    if calib.count.any():
        acs, acs_cover = calib.finish(recon_x)
        acs_rows = acs_cover.any(axis=-1)
        acs_rows[holes] = False
    if nonfinite:
        log.warning("slice %s: %d non-finite k-space samples treated as not acquired (masked)",
                    meta.slice_index, nonfinite)
    return SliceData(kspace=kspace, mask=mask.astype(np.float32),
                     metadata=_with_plane(meta, recs), acs=acs, acs_rows=acs_rows,
                     nonfinite_samples=nonfinite)


def _count_nonfinite(rec: AcqRecord) -> int:
    """Samples (readout positions) of a line that are not finite in some coil."""
    data = np.asarray(rec.data)
    if np.isfinite(data).all():
        return 0
    return int((~np.isfinite(data)).any(axis=0).sum())


def _received(lines: Sequence[AcqRecord]) -> ReceivedData:
    rows: dict = {}
    for r in lines:
        rows.setdefault(r.slice, set()).add(r.e1)
    return ReceivedData(
        max_lines_per_slice=max(len(v) for v in rows.values()),
        max_samples=max(r.data.shape[-1] - r.discard_pre - r.discard_post for r in lines),
        coils=int(lines[0].data.shape[0]), slices=len(rows))


def _with_plane(meta: ScanMetadata, recs: Sequence[AcqRecord]) -> ScanMetadata:
    """``meta`` with the plane of the first imaging line's slice normal (it wins over the
    header's protocol-name guess); unchanged when no line carries a usable normal."""
    for rec in recs:
        if rec.slice_dir is not None and is_imaging(rec.flags):
            try:
                return dataclasses.replace(meta, slice_plane=slice_plane(rec.slice_dir))
            except ValueError:  # an all-zero normal: the scanner did not fill it
                return meta
    return meta


def assemble_slices(
    records: Iterable[AcqRecord], encoding: EncodingInfo, metadata: ScanMetadata,
    *, repetition: Optional[int] = None, limits: GridLimits = GridLimits(),
) -> Tuple[Tuple[SliceData, ...], Optional[np.ndarray]]:
    """Records of one scan -> (slices in ascending ``idx.slice``, noise (C, N) or None).

    Each slice: kspace (C, E1, RO) complex64, mask (E1, RO) float32, ``acs``/``acs_rows``
    when lines are flagged as calibration, else None. ``ValueError`` when nothing is imaging
    data or a line does not fit the grid; ``ScanTooLarge`` (a ``ValueError``) when the grid
    the header asks for does not fit the data received or ``limits``.
    """
    noise, lines = [], []
    for rec in records:
        if is_noise(rec.flags):
            noise.append(np.asarray(rec.data))
        elif is_imaging(rec.flags) or is_calibration(rec.flags):
            lines.append(rec)
    if not any(is_imaging(r.flags) for r in lines):
        raise ValueError("no imaging acquisitions")
    chosen = _select_repetition(lines, repetition)
    lines = [r for r in lines if r.repetition == chosen]
    if len({r.data.shape[0] for r in lines}) > 1:
        raise ValueError("imaging lines have different channel counts")
    shape = grid_shape(encoding, lines)
    check_grid(shape[0], shape[1], _received(lines), limits)
    by_slice: dict = {}
    for rec in lines:
        by_slice.setdefault(rec.slice, []).append(rec)
    slices = tuple(_assemble_one(by_slice[s], shape, metadata.for_slice(s))
                   for s in sorted(by_slice))
    return slices, _collect_noise(noise, lines[0].data.shape[0])


def detect_acs_rows(mask_rows: np.ndarray) -> np.ndarray:
    """(E1,) bool acquired rows -> (E1,) bool, the contiguous acquired block around the centre.

    Starts at row E1 // 2 (or E1 // 2 - 1 if that one is missing) and grows while neighbours
    are acquired; all False if neither centre row was acquired. The width is whatever the
    data hold (never an assumed 24); a fully-sampled axis is one block.
    """
    rows = np.asarray(mask_rows).astype(bool).reshape(-1)
    out = np.zeros(rows.shape, dtype=bool)
    n = rows.size
    start = next((c for c in (n // 2, n // 2 - 1) if 0 <= c < n and rows[c]), None)
    if start is None:
        return out
    lo, hi = start, start
    while lo > 0 and rows[lo - 1]:
        lo -= 1
    while hi < n - 1 and rows[hi + 1]:
        hi += 1
    out[lo:hi + 1] = True
    return out


def calibration_rows(sl: SliceData) -> np.ndarray:
    """(E1,) bool ACS rows of a slice: the flagged ones, else the detected centre block."""
    if sl.acs_rows is not None:
        return np.asarray(sl.acs_rows, dtype=bool)
    mask = np.asarray(sl.mask)
    return detect_acs_rows(mask.any(axis=-1) if mask.ndim == 2 else mask.reshape(-1) > 0)
