"""Find the calibration (ACS) region that is actually present; never assume its width."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def _central_run(flags: np.ndarray) -> slice:
    """The contiguous run of True around the centre of a 1D bool array (empty if centre False)."""
    n = flags.size
    c = n // 2
    if not flags[c]:
        near = np.flatnonzero(flags[max(c - 1, 0):c + 2])
        if near.size == 0:
            return slice(c, c)
        c = max(c - 1, 0) + int(near[0])
    lo, hi = c, c + 1
    while lo > 0 and flags[lo - 1]:
        lo -= 1
    while hi < n and flags[hi]:
        hi += 1
    return slice(lo, hi)


def _grow_box(mask: np.ndarray) -> Tuple[slice, slice]:
    """Grow a rectangle from the centre pixel, one side at a time, while the new edge is
    fully sampled: a maximal fully sampled rectangle containing the centre."""
    ny, nx = mask.shape
    y0, y1, x0, x1 = ny // 2, ny // 2 + 1, nx // 2, nx // 2 + 1
    if not mask[y0, x0]:
        return slice(y0, y0), slice(x0, x0)
    grown = True
    while grown:
        grown = False
        if y0 > 0 and mask[y0 - 1, x0:x1].all():
            y0, grown = y0 - 1, True
        if y1 < ny and mask[y1, x0:x1].all():
            y1, grown = y1 + 1, True
        if x0 > 0 and mask[y0:y1, x0 - 1].all():
            x0, grown = x0 - 1, True
        if x1 < nx and mask[y0:y1, x1].all():
            x1, grown = x1 + 1, True
    return slice(y0, y1), slice(x0, x1)


def calibration_box(mask: np.ndarray, acs_rows: Optional[np.ndarray] = None) -> Tuple[slice, slice]:
    """Largest centred rectangle of fully sampled k-space, as ``(row slice, column slice)``.

    ``mask``: ``(ky, kx)`` (1 = acquired). ``acs_rows``: rows flagged as calibration data by
    the scanner, if any (then the rows are the central run of flagged or fully sampled rows
    and the box spans the readout). With 1D undersampling the box spans the whole readout; with 2D (Poisson)
    masks it is the fully sampled central block.
    """
    mask = np.asarray(mask) > 0
    if acs_rows is not None and np.asarray(acs_rows).any():
        # flagged ACS rows plus fully sampled imaging rows (a fully sampled scan flags only a
        # few central lines, but all of its lines can calibrate)
        rows = _central_run(np.asarray(acs_rows, dtype=bool) | mask.all(axis=1))
        return rows, slice(0, mask.shape[1])
    full_rows = mask.all(axis=1)
    if full_rows[mask.shape[0] // 2]:  # 1D undersampling: whole readout lines
        return _central_run(full_rows), slice(0, mask.shape[1])
    return _grow_box(mask)


def _cap(sl: slice, limit: Optional[int]) -> slice:
    """The central ``limit`` entries of ``sl`` (all of it when shorter or no limit)."""
    n = sl.stop - sl.start
    if limit is None or n <= limit:
        return sl
    start = sl.start + (n - limit) // 2
    return slice(start, start + limit)


#: Calibration rows used at most: a fully sampled scan would otherwise calibrate on all of
#: k-space, which is slow and yields maps that cover the whole FOV (noise included), unlike
#: the maps an accelerated scan gets from its ACS lines.
MAX_CALIBRATION_ROWS = 32


def calibration_data(
    kspace: np.ndarray, mask: np.ndarray, acs: Optional[np.ndarray] = None,
    acs_rows: Optional[np.ndarray] = None, max_rows: Optional[int] = MAX_CALIBRATION_ROWS,
) -> np.ndarray:
    """The ACS block ``(C, n_rows, n_cols)`` from separate/embedded ACS data or the mask,
    at most ``max_rows`` central rows."""
    rows, cols = calibration_box(mask, acs_rows)
    rows = _cap(rows, max_rows)
    source = kspace
    if acs is not None and acs_rows is not None and np.asarray(acs_rows).any():
        source = np.where(np.asarray(acs_rows, dtype=bool)[None, :, None], acs, kspace)
    return np.ascontiguousarray(source[:, rows, cols])
