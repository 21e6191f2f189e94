"""``read_scan``: one entry point for every raw .h5 layout, chosen by content, not by name."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import h5py

from contextmri_core.data.grid_limits import GridLimits
from contextmri_core.data.scan import RawScan
from contextmri_core.errors import InputFileError
from contextmri_core.io.raw.fastmri_reader import read_fastmri
from contextmri_core.io.raw.ismrmrd_reader import open_h5, read_ismrmrd


def detect_layout(path: Union[str, Path]) -> str:
    """``"fastmri"`` (has ``kspace``) or ``"ismrmrd"`` (has a ``dataset`` group)."""
    with open_h5(path) as f:
        if "kspace" in f:
            return "fastmri"
        if isinstance(f.get("dataset"), h5py.Group):
            return "ismrmrd"
        keys = sorted(f.keys())
    raise InputFileError(path, f"unknown .h5 layout: expected 'kspace' (fastMRI) or a "
                               f"'dataset' group (ISMRMRD), found {keys}")


def read_scan(path: Union[str, Path], *, anatomy_override: Optional[str] = None,
              repetition: Optional[int] = None, limits: GridLimits = GridLimits()) -> RawScan:
    """Read an ISMRMRD v1 or fastMRI .h5 file into a ``RawScan`` (``repetition``: which
    ISMRMRD repetition to assemble, default the lowest; fastMRI files have one). A k-space
    grid that does not fit the data or ``limits`` is an ``InputFileError`` (one line)."""
    if detect_layout(path) == "fastmri":
        return read_fastmri(path, anatomy_override=anatomy_override, limits=limits)
    return read_ismrmrd(path, anatomy_override=anatomy_override, repetition=repetition,
                        limits=limits)
