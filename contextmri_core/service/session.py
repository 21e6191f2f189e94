"""One reconstruction session over an ISMRMRD stream, shared by the Gadgetron gadgets and the
stream server: settings from the pipeline/JSON properties, the model loaded once per process
(:class:`Engine`), the core stages of ``contextmri_core.recon.stream`` in order, image frames
out through a ``send(bytes)`` callable. Failures are reported with an ERROR frame (never a
silent truncation); a classical fallback image follows where the data allow one. The caller
sends CLOSE.
"""

from __future__ import annotations

import dataclasses
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
from contextmri_core.recon.stream import STREAM_STEPS, Interrupt, SliceOutcome, StreamSettings, recon_stream
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
    """Loaded models, keyed by (directory, device): a warm process loads each model once.
    A model folder is either of our checkpoints or the published ContextMRI release, whose
    UNet is chosen per scan from the data unless ``settings.unet`` forces one."""

    def __init__(self, default_model: Optional[str] = None) -> None:
        self.default_model = default_model
        self._models: Dict[Tuple[str, str], Any] = {}
        self.load_seconds: Dict[str, float] = {}

    def model_dir(self, settings: StreamSettings) -> str:
        if settings.model:
            return settings.model
        if self.default_model:
            return self.default_model
        from contextmri_core.models import DEFAULT_MODEL_DIR
        return str(DEFAULT_MODEL_DIR)

    def model(self, settings: StreamSettings) -> Any:
        """The ``ModelHandle`` of the settings' model folder (its UNets load when used)."""
        from contextmri_core.io.models.official import ModelHandle

        key = (str(Path(self.model_dir(settings)).resolve()), settings.resolved_device())
        if key not in self._models:
            self._models[key] = ModelHandle(key[0], key[1])
        return self._models[key]

    def prior(self, settings: StreamSettings) -> Any:
        """The prior of ``settings.unet`` (or the folder's default UNet), loaded now."""
        handle = self.model(settings)
        if handle.is_loaded(settings.unet):
            return handle.prior(settings.unet)
        t0 = time.perf_counter()
        prior = handle.prior(settings.unet)
        seconds = time.perf_counter() - t0
        self.load_seconds[str(handle.folder.path)] = seconds
        log.info("loaded model %s on %s in %.2f s", handle.folder.path, handle.device, seconds)
        return prior

    def resolved(self, settings: StreamSettings, contextmri_steps: int = STREAM_STEPS
                 ) -> StreamSettings:
        """``settings`` with ``preset``, ``steps`` and ``guidance`` filled in from the model's
        preset (``paper`` for a published checkpoint); ``contextmri_steps`` is our preset's
        step count at this entry point. A model that fails to load is left to fail (and fall
        back) where it is used."""
        from contextmri_core.recon.presets import PAPER, preset_name

        preset = "contextmri" if settings.preset == "auto" else settings.preset
        if settings.method in ("dds", "dps"):
            try:
                preset = preset_name(self.prior(settings), settings.preset)
            except Exception as exc:  # noqa: BLE001 - reported by the reconstruction itself
                log.warning("model not loaded (%s); the reconstruction will fall back", exc)
        steps, guidance = ((PAPER.dds.steps, PAPER.dds.guidance) if preset == "paper"
                           else (contextmri_steps, 1.0))
        return dataclasses.replace(
            settings, preset=preset,
            steps=settings.steps if settings.steps is not None else steps,
            guidance=settings.guidance if settings.guidance is not None else guidance)

    def recon_config(self, settings: StreamSettings, prior: Any) -> Any:
        """The ``DiffusionReconConfig`` of ``settings`` for ``prior``: its preset, then every
        setting the user gave."""
        from contextmri_core.recon.presets import preset_config, with_overrides

        base = preset_config(prior, settings.preset)
        return with_overrides(base, steps=settings.steps, guidance=settings.guidance,
                              sampler=settings.method, seed=settings.seed,
                              batch_size=settings.batch_size, ensemble_size=settings.ensemble,
                              support_mask=settings.support_mask, clip=settings.clip,
                              precision=settings.precision,
                              grid=None if settings.grid == "auto" else settings.grid)

    def reconstructor(self, settings: StreamSettings) -> Reconstructor:
        from contextmri_core.data.published import choose_unet
        from contextmri_core.recon.classical import SenseRecon, ZeroFilledRecon
        from contextmri_core.recon.diffusion import DiffusionReconstructor
        from contextmri_core.recon.switch import UnetSwitch

        if settings.method == "sense":
            return SenseRecon()
        if settings.method == "zero_filled":
            return ZeroFilledRecon()
        handle, device = self.model(settings), settings.resolved_device()

        def build(unet: Optional[str]) -> DiffusionReconstructor:
            prior = handle.prior(unet)
            return DiffusionReconstructor(prior, self.recon_config(settings, prior), device)

        if settings.unet is None and len(handle.unets) > 1:
            return UnetSwitch(build, lambda meta: choose_unet(meta, handle.unets), settings.method)
        return build(settings.unet)


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
        settings = engine.resolved(settings)
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
