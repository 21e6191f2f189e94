"""One reconstruction session over an ISMRMRD stream, shared by the Gadgetron gadgets and the
stream server: settings from the pipeline/JSON properties, the model loaded once per process
(:class:`Engine`), the core stages of ``contextmri_core.recon.stream`` in order, image frames
out through a ``send(bytes)`` callable. Failures are reported with an ERROR frame (never a
silent truncation); a classical fallback image follows where the data allow one. The caller
sends CLOSE.
"""

from __future__ import annotations

import json
import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from contextmri_core.data.assembly import AcqRecord
from contextmri_core.data.encoding import EncodingInfo, parse_encoding
from contextmri_core.data.grid_limits import GridLimits
from contextmri_core.errors import ContextMRIError
from contextmri_core.io.mrd.images import GeometryTap, ImageRequest, image_frames
from contextmri_core.io.mrd.stream import ProtocolError, frame_error, header_text
from contextmri_core.recon.base import Reconstructor
from contextmri_core.recon.stream import Interrupt, SliceOutcome, StreamSettings, recon_stream
from contextmri_core.service.series import (SeriesMaker, SlicesOut, primary_series, protocol_label,
                                            recon_comments, send_to_pacs)

log = logging.getLogger(__name__)
Send = Callable[[bytes], None]


def properties_from_config(config: "bytes | str | None") -> Dict[str, str]:
    """``<property name=... value=.../>`` pairs anywhere in a Gadgetron config XML (the
    external gadget's ``<configuration>`` or a whole stream config); {} when it is not XML."""
    if not config:
        return {}
    try:
        root = ET.fromstring(config)
    except ET.ParseError:
        log.info("config is not XML (a config name?): no properties taken from it")
        return {}
    props = {}
    for node in root.iter():
        if node.tag.split("}")[-1] != "property":
            continue
        name = node.get("name") or node.findtext("name")
        value = node.get("value") if node.get("value") is not None else node.findtext("value")
        if name:
            props[name.strip()] = (value or "").strip()
    return props


def properties_from_json(text: str) -> Dict[str, Any]:
    """FIRE-style JSON parameters: top-level scalars, and those of a ``parameters`` object."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("JSON parameters must be an object")
    flat = {k: v for k, v in doc.items() if not isinstance(v, (dict, list))}
    params = doc.get("parameters")
    if isinstance(params, dict):
        flat.update({k: v for k, v in params.items() if not isinstance(v, (dict, list))})
    return flat


class Engine:
    """Loaded priors, keyed by (directory, device): a warm process loads each model once."""

    def __init__(self, default_model: Optional[str] = None) -> None:
        self.default_model = default_model
        self._priors: Dict[Tuple[str, str], Any] = {}
        self.load_seconds: Dict[str, float] = {}

    def model_dir(self, settings: StreamSettings) -> str:
        if settings.model:
            return settings.model
        if self.default_model:
            return self.default_model
        from contextmri_core.models import DEFAULT_MODEL_DIR
        return str(DEFAULT_MODEL_DIR)

    def prior(self, settings: StreamSettings) -> Any:
        from contextmri_core.io.models.checkpoint import load_prior

        key = (str(Path(self.model_dir(settings)).resolve()), settings.resolved_device())
        if key not in self._priors:
            t0 = time.perf_counter()
            self._priors[key] = load_prior(key[0], key[1])
            self.load_seconds[key[0]] = time.perf_counter() - t0
            log.info("loaded model %s on %s in %.2f s", key[0], key[1], self.load_seconds[key[0]])
        return self._priors[key]

    def reconstructor(self, settings: StreamSettings) -> Reconstructor:
        from contextmri_core.recon.classical import SenseRecon, ZeroFilledRecon
        from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
        from contextmri_core.sampling.dds import DDSConfig

        if settings.method == "sense":
            return SenseRecon()
        if settings.method == "zero_filled":
            return ZeroFilledRecon()
        cfg = DiffusionReconConfig(dds=DDSConfig(steps=settings.steps, guidance=settings.guidance),
                                   sampler=settings.method, seed=settings.seed,
                                   batch_size=settings.batch_size, ensemble_size=settings.ensemble)
        return DiffusionReconstructor(self.prior(settings), cfg, settings.resolved_device())


@dataclass
class SessionReport:
    """What a session sent: image frames, slices, and the errors reported with ERROR frames."""

    images: int = 0
    slices: int = 0
    errors: List[str] = field(default_factory=list)


def _fov(enc: EncodingInfo) -> Tuple[float, float, float]:
    fov = enc.recon_fov_mm or enc.encoded_fov_mm or (0.0, 0.0, 0.0)
    return (float(fov[0]), float(fov[1]), float(fov[2]))


def _fallback_text(settings: StreamSettings, out: SliceOutcome) -> str:
    """The ERROR text of a slice a fallback made: names the method that really made it."""
    usable = "" if out.usable else " (no usable image: zeros where not finite)"
    return (f"contextmri: {settings.method} failed, sent the {out.method} FALLBACK "
            f"image{usable}: {out.error}")


def report_error(send: Send, report: SessionReport, text: str) -> None:
    """Send ERROR (8) once per distinct message and remember it."""
    if text not in report.errors:
        report.errors.append(text)
        send(frame_error(text))


def _to_pacs(done: SlicesOut, xml: str, enc: EncodingInfo, settings: StreamSettings,
             model_name: str) -> None:
    """Also send the session's images as DICOM to the PACS (through the outbox)."""
    recon = enc.recon_matrix
    matrix = (int(recon[1]), int(recon[0])) if recon else (0, 0)
    maker = SeriesMaker(done, matrix, protocol_label(done.metadata[0]),
                        recon_comments(settings, model_name, **done.notes()))
    res = send_to_pacs(primary_series(maker, settings), xml, _fov(enc), settings.pacs,
                       settings.calling_aet, Path(settings.outbox) if settings.outbox else None)
    if not res.ok:
        log.warning("PACS did not take %d instances; they stay queued for `contextmri push`",
                    len(res.remaining))


def run_session(records: Iterable[AcqRecord], header: "bytes | str", settings: StreamSettings,
                engine: Engine, tap: GeometryTap, send: Send,
                encoding: Optional[EncodingInfo] = None, interrupt: Optional[Interrupt] = None,
                grid_limits: GridLimits = GridLimits()) -> SessionReport:
    """Reconstruct the stream ``records`` and send its images; never raises for bad data.

    ``tap`` must sit upstream of ``records`` (it collects each slice's geometry). Errors go
    out as ERROR frames (and into the log); the caller closes the stream. ``interrupt``
    (session time limit, shutdown) stops the sampler: the fallback finishes the images.
    """
    report = SessionReport()
    try:
        xml = header_text(header)
        enc = encoding or parse_encoding(xml)
        model = engine.model_dir(settings) if settings.method in ("dds", "dps") else None
        stream = recon_stream(records, xml, settings, lambda: engine.reconstructor(settings), enc,
                              interrupt, grid_limits)
        done = SlicesOut()
        for out in stream:
            done.add(out, tap.get(out.slice_index))
            if out.error:
                report_error(send, report, _fallback_text(settings, out))
            attrs = {**out.attributes, "model": Path(model).name if model else None}
            req = ImageRequest(out.slice_index, out.image, out.uncertainty, out.fallback, attrs)
            frames = image_frames(req, tap.get(out.slice_index), _fov(enc), report.slices + 1,
                                  settings.phase)
            for frame in frames:
                send(frame)
            report.images += len(frames)
            report.slices += 1
        if settings.pacs and done.images:
            _to_pacs(done, xml, enc, settings, Path(model).name if model else "none")
    except ProtocolError as exc:
        log.error("stream broken after %d slices: %s", report.slices, exc)
        report_error(send, report, f"contextmri: {exc}")
    except (ContextMRIError, ValueError) as exc:  # bad data (e.g. the header's grid): one line
        log.error("session refused after %d slices: %s", report.slices, exc)
        report_error(send, report, f"contextmri: {exc}")
    except Exception as exc:  # noqa: BLE001 - must reach the peer as ERROR, not as a CLOSE
        log.exception("contextmri session failed after %d slices", report.slices)
        report_error(send, report, f"contextmri: {type(exc).__name__}: {exc}")
    return report
