"""Reconstructed slices -> DICOM series (primary, phase, uncertainty, labelled fallbacks), and
their delivery to a PACS through the on-disk outbox. Shared by ``replay``, ``serve`` and the
Gadgetron gadgets so every entry point labels and sends images the same way."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from contextmri_core.data.fftnp import crop_center
from contextmri_core.data.geometry import SliceGeometry
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.io.dicom.writer import DicomSeries
from contextmri_core.io.mrd.images import (SERIES_FALLBACK_OFFSET, SERIES_MAGNITUDE, SERIES_PHASE,
                                           SERIES_UNCERTAINTY)
from contextmri_core.recon.stream import SliceOutcome, StreamSettings

log = logging.getLogger(__name__)


@dataclass
class SlicesOut:
    """Per-slice results of one scan, in slice order (what the series are built from)."""

    images: List[np.ndarray] = field(default_factory=list)  # complex (E1, RO)
    uncertainty: List[Optional[np.ndarray]] = field(default_factory=list)
    errors: List[Optional[str]] = field(default_factory=list)
    methods: List[str] = field(default_factory=list)
    metadata: List[ScanMetadata] = field(default_factory=list)
    geometry: List[SliceGeometry] = field(default_factory=list)
    nonfinite: List[int] = field(default_factory=list)  # masked non-finite k-space samples
    usable: List[bool] = field(default_factory=list)
    prompts: List[Optional[str]] = field(default_factory=list)  # what the prior was given

    def add(self, out: SliceOutcome, geometry: SliceGeometry) -> None:
        self.prompts.append(out.attributes.get("prompt"))
        self.images.append(out.image)
        self.uncertainty.append(out.uncertainty)
        self.errors.append(out.error)
        self.methods.append(out.method)
        self.metadata.append(out.metadata)
        self.geometry.append(geometry)
        self.nonfinite.append(int(out.attributes.get("nonfinite_kspace_samples") or 0))
        self.usable.append(out.usable)

    def notes(self) -> Dict[str, Any]:
        """What ImageComments must also say about the data: ``nonfinite_kspace_samples``
        ({slice index: count}) when samples were NaN/inf and masked out."""
        counts = {str(m.slice_index): n for m, n in zip(self.metadata, self.nonfinite) if n}
        return {"nonfinite_kspace_samples": counts} if counts else {}

    def made_by(self, primary: str) -> str:
        """Which method made the images, e.g. ``dds``, ``sense FALLBACK (2/2)`` or
        ``dds + zero_filled FALLBACK (1/4)`` (never a method that made none of them)."""
        n = len(self.methods)
        parts = [primary] if any(e is None for e in self.errors) else []
        for method in sorted({m for m, e in zip(self.methods, self.errors) if e is not None}):
            k = sum(1 for m, e in zip(self.methods, self.errors) if e is not None and m == method)
            parts.append(f"{method} FALLBACK ({k}/{n})")
        return " + ".join(parts)

    def unusable_slices(self) -> List[int]:
        return [int(m.slice_index or i) for i, (m, ok) in enumerate(zip(self.metadata,
                                                                        self.usable)) if not ok]


def crop_to(image: np.ndarray, matrix: Tuple[int, int]) -> np.ndarray:
    """Centre-crop ``(E1, RO)`` to the header's recon matrix ``(ny, nx)`` where smaller."""
    out = np.asarray(image)
    for axis, n in zip((-2, -1), matrix):
        if 0 < n < out.shape[axis]:
            out = crop_center(out, n, axis=axis)
    return out


def protocol_label(meta: ScanMetadata) -> str:
    """What a series description starts with: the protocol (or series) name of the scan."""
    return meta.protocol_name or meta.series_description or "scan"


def _part(image: np.ndarray, kind: str) -> np.ndarray:
    return np.angle(image) if kind == "phase" else np.abs(image)


@dataclass(frozen=True)
class SeriesMaker:
    """Builds labelled ``DicomSeries`` of one scan on its recon grid."""

    got: SlicesOut
    matrix: Tuple[int, int]
    protocol: str
    comments: Mapping[str, Any]

    def make(self, idx: Sequence[int], images: Sequence[Any], number: int, method: str,
             kind: str = "magnitude", reason: Optional[str] = None) -> List[DicomSeries]:
        """One series of slices ``idx`` of ``images`` (none when ``idx`` is empty)."""
        if not idx:
            return []
        label = f"{self.protocol} contextmri {method.upper()}" + (
            "" if kind == "magnitude" else f" {kind}")
        return [DicomSeries(
            images=[crop_to(_part(np.asarray(images[i]), kind), self.matrix) for i in idx],
            geometry=[self.got.geometry[i] for i in idx],
            metadata=[self.got.metadata[i] for i in idx], series_number=number,
            description=label, kind=kind, method=method, fallback_reason=reason,
            comments=dict(self.comments), protocol=self.protocol, prompts=self._prompts(idx))]

    def _prompts(self, idx: Sequence[int]) -> Dict[int, str]:
        """Slice index -> the prompt the slice was reconstructed with (when known)."""
        known = self.got.prompts
        return {int(self.got.metadata[i].slice_index or 0): known[i] for i in idx
                if i < len(known) and known[i] is not None}


def primary_series(maker: SeriesMaker, settings: StreamSettings) -> List[DicomSeries]:
    """The reconstruction asked for (magnitude; phase and uncertainty when asked) and, as
    their own labelled series, the slices a classical fallback reconstructed."""
    got = maker.got
    ok = [i for i, e in enumerate(got.errors) if e is None]
    out = maker.make(ok, got.images, SERIES_MAGNITUDE, settings.method)
    if settings.phase:
        out += maker.make(ok, got.images, SERIES_PHASE, settings.method, "phase")
    if settings.ensemble > 1:
        out += maker.make(ok, got.uncertainty, SERIES_UNCERTAINTY, settings.method, "uncertainty")
    failed = [i for i, e in enumerate(got.errors) if e is not None]
    for k, method in enumerate(sorted({got.methods[i] for i in failed})):
        idx = [i for i in failed if got.methods[i] == method]
        out += maker.make(idx, got.images, SERIES_FALLBACK_OFFSET + SERIES_MAGNITUDE + k, method,
                          reason=got.errors[idx[0]])
    return out


def recon_comments(settings: StreamSettings, model_name: str, **extra: Any) -> Dict[str, Any]:
    """What ImageComments records about how the images were made."""
    return {"guidance": settings.guidance, "steps": settings.steps, "model": model_name,
            "seed": settings.seed, "ensemble": settings.ensemble, **extra}


def default_outbox() -> Path:
    """``$XDG_STATE_HOME/contextmri/outbox`` (``~/.local/state/...`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "contextmri" / "outbox"


def send_to_pacs(series: Sequence[DicomSeries], header_xml: str, fov_mm: Tuple[float, float, float],
                 pacs: str, calling_aet: str = "CONTEXTMRI",
                 outbox: Optional[Path] = None) -> Any:
    """Write ``series`` as DICOM straight into the outbox and drain it to ``pacs``
    (``HOST:PORT:AET``). Returns the ``PushReport``; what the PACS did not take stays queued
    for ``contextmri push``."""
    from contextmri_core.io.dicom.writer import StudyContext, write_series
    from contextmri_core.io.dicom.pacs import Outbox, PacsTarget, push

    target = PacsTarget.parse(pacs, calling_aet=calling_aet)
    box = Outbox(Path(outbox) if outbox else default_outbox())
    ctx = StudyContext.from_header(header_xml, fov_mm)
    with tempfile.TemporaryDirectory(prefix="contextmri-dicom-") as tmp:
        files = [p for sr in series for p in write_series(Path(tmp) / f"{sr.series_number:02d}",
                                                          sr, ctx)]
        box.enqueue(files)
    report = push(box, target)
    log.info("PACS %s: sent %d, failed %d, still queued %d", target, report.sent, report.failed,
             len(report.remaining))
    return report
