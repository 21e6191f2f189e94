"""Containers for raw Cartesian k-space as the readers hand it over (numpy, complex64).

Axis order (fixed for the whole project): one slice is ``(coils, ky, kx)`` = (C, E1, RO).
Readout oversampling has already been removed; partial-Fourier gaps are zero and unmasked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from contextmri_core.data.geometry import SliceGeometry
from contextmri_core.data.metadata import ScanMetadata


@dataclass(frozen=True)
class SliceData:
    """One slice of multi-coil Cartesian k-space.

    kspace:    (C, E1, RO) complex64, zeros where nothing was acquired.
    mask:      (E1, RO) float32, 1 = acquired (imaging lines only).
    acs:       (C, E1, RO) complex64 calibration k-space on the same grid (separate
               ACS lines or imaging lines flagged calibration-and-imaging), zero elsewhere;
               ``None`` if the scan flags none (callers then detect the centre block).
    acs_rows:  (E1,) bool, the rows of ``acs`` that hold calibration data.
    nonfinite_samples: how many acquired samples were NaN/inf (zeroed and masked out).
    """

    kspace: np.ndarray
    mask: np.ndarray
    metadata: ScanMetadata
    acs: Optional[np.ndarray] = None
    acs_rows: Optional[np.ndarray] = None
    nonfinite_samples: int = 0

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def acceleration(self) -> float:
        """Nominal acceleration: grid points over acquired points of the phase-encode axis."""
        rows = self.mask.any(axis=-1) if self.mask.ndim == 2 else self.mask.astype(bool)
        return float(rows.size / max(int(rows.sum()), 1))


@dataclass(frozen=True)
class RawScan:
    """A whole scan as read from a file or stream.

    noise:            (C, N) complex64 noise samples, or ``None`` when the scan has none.
    encoded_matrix:   (E1, RO) of the k-space grid after readout-oversampling removal.
    recon_matrix:     (ny, nx) that the header asks for.
    fov_mm:           reconstructed field of view (x, y, z) in mm.
    noise_acquisitions: how many noise readouts (``ACQ_IS_NOISE_MEASUREMENT``) ``noise`` holds.
    geometry:         one ``SliceGeometry`` per entry of ``slices`` (same order).
    """

    source: str
    slices: Tuple[SliceData, ...]
    metadata: ScanMetadata
    header_xml: str
    noise: Optional[np.ndarray] = None
    encoded_matrix: Tuple[int, int] = (0, 0)
    recon_matrix: Tuple[int, int] = (0, 0)
    fov_mm: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    readout_oversampling: float = 1.0
    coil_names: Tuple[str, ...] = field(default_factory=tuple)
    noise_acquisitions: int = 0
    geometry: Tuple[SliceGeometry, ...] = field(default_factory=tuple)

    def geometry_of(self, i: int) -> SliceGeometry:
        """Geometry of ``slices[i]`` (defaults when the file carried none)."""
        return self.geometry[i] if i < len(self.geometry) else SliceGeometry()

    @property
    def num_coils(self) -> int:
        return self.slices[0].num_coils if self.slices else 0
