"""Write a simulated scan in the fastMRI multi-coil .h5 layout.

Datasets (as in the public fastMRI brain files):
  kspace               (slices, coils, RO_os, E1) complex64 -- readout BEFORE phase encode,
                       zeros on the lines not acquired when undersampled
  ismrmrd_header       the ISMRMRD XML header (bytes)
  reconstruction_rss   (slices, RO, E1) float32, fully sampled files only: RSS of the
                       oversampling-removed coil images (rows = readout, columns = phase encode)
  mask                 (E1,) bool, undersampled files only
Attributes: ``acquisition`` (e.g. "AXFLAIR"), ``max``, ``norm``, ``patient_id``; undersampled
files also ``acceleration`` and ``num_low_frequency``.
The scan is duck-typed (``contextmri_core.synth.scan.SimulatedScan``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Union

import numpy as np

from contextmri_core.data.fftnp import crop_center, ifftc
from contextmri_core.errors import InputFileError
from contextmri_core.io.raw.ismrmrd_writer import build_header_xml

logger = logging.getLogger(__name__)


def fastmri_name(acquisition: str, index: int, anatomy: str = "brain") -> str:
    """fastMRI-like file name, e.g. ``file_brain_AXFLAIR_sim00012.h5``."""
    return f"file_{anatomy}_{acquisition}_sim{int(index):05d}.h5"


def reconstruction_rss(kspace: np.ndarray, num_readout: int) -> np.ndarray:
    """RSS ``(S, RO, E1)`` float32 from fastMRI-ordered k-space ``(S, C, RO_os, E1)``: inverse
    FFT, centre ``num_readout`` readout samples, root-sum-of-squares over coils."""
    img = crop_center(ifftc(kspace, axes=(-2, -1)), num_readout, axis=-2)
    return np.sqrt(np.sum(np.abs(img) ** 2, axis=1)).astype(np.float32)


def write_fastmri(
    path: Union[str, Path], scan: Any, include_rss: bool = True
) -> Path:
    """Write ``scan`` to ``path`` in the fastMRI layout (overwrites); returns the path.

    Fully sampled scans (``scan.plan.acceleration == 1``) get ``reconstruction_rss`` (unless
    ``include_rss`` is False); undersampled ones get ``mask`` and the sampling attributes.
    """
    import h5py

    path = Path(path)
    plan = scan.plan
    kspace = np.ascontiguousarray(np.swapaxes(scan.acquired_kspace(), -1, -2), np.complex64)
    full = int(plan.acceleration) == 1
    rss = reconstruction_rss(kspace, scan.config.matrix) if full else None
    try:
        with h5py.File(path, "w") as f:
            f.create_dataset("kspace", data=kspace)
            f.create_dataset("ismrmrd_header", data=build_header_xml(scan).encode("utf-8"))
            if rss is not None and include_rss:
                f.create_dataset("reconstruction_rss", data=rss)
            if not full:
                f.create_dataset("mask", data=np.asarray(plan.imaging, dtype=bool))
                f.attrs["acceleration"] = int(plan.acceleration)
                f.attrs["num_low_frequency"] = int(plan.num_low_frequency)
            f.attrs["acquisition"] = scan.protocol.name
            f.attrs["patient_id"] = scan.subject.patient_id
            if rss is not None:
                f.attrs["max"] = float(rss.max())
                f.attrs["norm"] = float(np.linalg.norm(rss))
    except OSError as exc:
        raise InputFileError(path, f"cannot write the fastMRI file: {exc}") from exc
    logger.info("wrote %s (%s, %d slices)", path, scan.protocol.name, kspace.shape[0])
    return path
