"""Reconstructed slices -> ISMRMRD image frames with scanner geometry and meta attributes.

The geometry of a slice (position, read/phase/slice directions, table position, measurement
uid, time stamps) comes from its first imaging acquisition, captured by :class:`GeometryTap`
as the acquisitions stream past; the field of view from the header's reconSpace. Series:
magnitude (``image_series_index`` = base), phase (base + 1), uncertainty (base + 2), and a
classical fallback adds 10 so a reader never mistakes it for the diffusion image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional
from xml.sax.saxutils import escape

import ismrmrd
import numpy as np

from contextmri_core.data.assembly import is_imaging, is_noise
from contextmri_core.data.geometry import SliceGeometry, Vec3, vec3
from contextmri_core.io.mrd.stream import frame_image

log = logging.getLogger(__name__)

IMTYPE_MAGNITUDE, IMTYPE_PHASE = 1, 2
SERIES_MAGNITUDE, SERIES_PHASE, SERIES_UNCERTAINTY, SERIES_FALLBACK_OFFSET = 1, 2, 3, 10


def geometry_of(head: Any) -> SliceGeometry:
    """``SliceGeometry`` from an ``ismrmrd.Acquisition`` or ``AcquisitionHeader``."""
    idx = head.idx
    return SliceGeometry(
        position=vec3(head.position), read_dir=vec3(head.read_dir),
        phase_dir=vec3(head.phase_dir), slice_dir=vec3(head.slice_dir),
        patient_table_position=vec3(head.patient_table_position),
        measurement_uid=int(head.measurement_uid),
        acquisition_time_stamp=int(head.acquisition_time_stamp),
        physiology_time_stamp=tuple(int(v) for v in head.physiology_time_stamp)[:3],
        average=int(idx.average), contrast=int(idx.contrast), phase=int(idx.phase),
        repetition=int(idx.repetition), set=int(idx.set))


class GeometryTap:
    """A pass-through generator stage remembering each slice's first imaging line's geometry."""

    def __init__(self) -> None:
        self.by_slice: Dict[int, SliceGeometry] = {}

    def observe(self, head: Any) -> None:
        flags = int(head.flags)
        s = int(head.idx.slice)
        if s not in self.by_slice and is_imaging(flags) and not is_noise(flags):
            self.by_slice[s] = geometry_of(head)

    def __call__(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, ismrmrd.Acquisition):
                self.observe(item)
            yield item

    def get(self, slice_index: int) -> SliceGeometry:
        if slice_index not in self.by_slice:
            log.warning("no geometry seen for slice %d; using defaults", slice_index)
        return self.by_slice.get(slice_index, SliceGeometry())


def meta_xml(attributes: Mapping[str, Any]) -> str:
    """ISMRMRD meta container (``<ismrmrdMeta>``); values are written as text, lists as
    several ``<value>`` entries, ``None`` left out."""
    parts = ["<?xml version=\"1.0\"?><ismrmrdMeta>"]
    for name, value in attributes.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        inner = "".join(f"<value>{escape(str(v))}</value>" for v in values)
        parts.append(f"<meta><name>{escape(str(name))}</name>{inner}</meta>")
    parts.append("</ismrmrdMeta>")
    return "".join(parts)


def image_header(geom: SliceGeometry, slice_index: int, fov_mm: Vec3, series: int,
                 image_index: int, image_type: int) -> Any:
    """An ``ismrmrd.ImageHeader`` with geometry, indices and type set (sizes by the writer)."""
    head = ismrmrd.ImageHeader()
    head.version = 1
    head.measurement_uid = geom.measurement_uid
    for i in range(3):
        head.field_of_view[i] = float(fov_mm[i])
        head.position[i], head.read_dir[i] = geom.position[i], geom.read_dir[i]
        head.phase_dir[i], head.slice_dir[i] = geom.phase_dir[i], geom.slice_dir[i]
        head.patient_table_position[i] = geom.patient_table_position[i]
        head.physiology_time_stamp[i] = geom.physiology_time_stamp[i]
    head.slice, head.average, head.contrast = int(slice_index), geom.average, geom.contrast
    head.phase, head.repetition, head.set = geom.phase, geom.repetition, geom.set
    head.acquisition_time_stamp = geom.acquisition_time_stamp
    head.image_series_index, head.image_index = int(series), int(image_index)
    head.image_type = int(image_type)
    return head


@dataclass(frozen=True)
class ImageRequest:
    """What to send for one reconstructed slice (arrays ``(ny, nx)``)."""

    slice_index: int
    image: np.ndarray
    uncertainty: Optional[np.ndarray] = None
    fallback: bool = False
    attributes: Optional[Mapping[str, Any]] = None


def image_frames(req: ImageRequest, geom: SliceGeometry, fov_mm: Vec3, image_index: int,
                 with_phase: bool = False) -> List[bytes]:
    """Frames of one slice: magnitude float32, optional phase (radians) and uncertainty."""
    base = SERIES_FALLBACK_OFFSET if req.fallback else 0
    attrs = dict(req.attributes or {})
    image = np.asarray(req.image)
    out = [(SERIES_MAGNITUDE, IMTYPE_MAGNITUDE, np.abs(image), "magnitude")]
    if with_phase and np.iscomplexobj(image):
        out.append((SERIES_PHASE, IMTYPE_PHASE, np.angle(image), "phase"))
    if req.uncertainty is not None:
        out.append((SERIES_UNCERTAINTY, IMTYPE_MAGNITUDE, np.abs(req.uncertainty), "uncertainty"))
    frames = []
    for series, itype, data, kind in out:
        head = image_header(geom, req.slice_index, fov_mm, base + series, image_index, itype)
        meta = meta_xml({**attrs, "ImageKind": kind})
        frames.append(frame_image(head, meta, data.astype(np.float32)))
    return frames
