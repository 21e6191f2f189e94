"""The ``RawScan`` both readers return, built in one place."""

from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence

import numpy as np

from contextmri_core.data.encoding import EncodingInfo
from contextmri_core.data.geometry import SliceGeometry, stacked_geometry
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.scan import RawScan, SliceData

log = logging.getLogger(__name__)


def build_raw_scan(
    path: object, slices: Sequence[SliceData], meta: ScanMetadata, xml: str, enc: EncodingInfo,
    noise: Optional[np.ndarray], readout_oversampling: float, noise_acquisitions: int = 0,
    geometry: Optional[Mapping[int, SliceGeometry]] = None,
) -> RawScan:
    """Matrices from the assembled k-space (``(C, E1, RO)``); the recon matrix falls back to
    the k-space grid when the header has none. ``geometry`` maps slice index -> geometry;
    slices it lacks are stacked axially ``fov z`` apart around the isocentre."""
    first = slices[0].kspace.shape
    recon = enc.recon_matrix or (first[2], first[1], 1)  # header order (x = RO, y = E1, z)
    log.info("%s: %d slices, %d coils, k-space %s", path, len(slices), first[0], first[1:])
    fov = enc.recon_fov_mm or (0.0, 0.0, 0.0)
    stacked = stacked_geometry(len(slices), fov[2] or 1.0)
    given = geometry or {}
    geoms = tuple(given.get(int(s.metadata.slice_index or 0), stacked[i])
                  for i, s in enumerate(slices))
    return RawScan(
        source=str(path), slices=tuple(slices), metadata=meta, header_xml=xml, noise=noise,
        encoded_matrix=(int(first[1]), int(first[2])), recon_matrix=(recon[1], recon[0]),
        fov_mm=fov, readout_oversampling=readout_oversampling,
        coil_names=enc.coil_names, noise_acquisitions=noise_acquisitions, geometry=geoms)
